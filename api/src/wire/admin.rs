//! The catalog, policy, principal and audit shapes: bodies the approvers and
//! admins send and the answers they get. Each is a type, so the OpenAPI
//! document's schemas come from the same definitions that serialise.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use veil_policies::{DatasetManifest, Level};

use crate::store::{AuditRecord, ChainReport, PolicyVersion, PrincipalRecord, PrincipalStatus};

/// `GET /v1/catalog`'s query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CatalogQuery {
    /// The purpose the caller's grants are read under.
    pub purpose: Option<String>,
}

/// One field of a catalog entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldView {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: &'static str,
    pub description: String,
    pub category: String,
    pub grade: String,
    /// The kind of identifier it holds, when it holds one.
    pub identifier: Option<&'static str>,
    pub personal: bool,
    pub sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<Vec<String>>,
    /// The caller's disclosure level (`deny`, `aggregate`, `masked`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// The terms a dataset is shared on (Art. 27).
#[derive(Debug, Serialize, ToSchema)]
pub struct ShareView {
    pub attribute: &'static str,
    pub conditions: String,
    pub scope: String,
    pub legal_basis: String,
}

/// The terms a dataset is opened on (Art. 33).
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenView {
    pub attribute: &'static str,
    pub conditions: String,
}

/// A catalog entry (Art. 13, 33).
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetView {
    pub name: String,
    pub version: i64,
    pub title: String,
    pub description: String,
    pub database: &'static str,
    pub providing_institution: String,
    pub collecting_institution: String,
    pub approving_institution: String,
    pub data_form: String,
    pub format: &'static str,
    pub update_frequency: &'static str,
    pub share: ShareView,
    pub open: OpenView,
    pub privacy_unit: String,
    pub region_field: Option<String>,
    pub fields: Vec<FieldView>,
}

impl DatasetView {
    /// The entry, each field with the level in `levels` (deny when absent),
    /// or with no level when `levels` is `None`.
    pub fn new(m: &DatasetManifest, version: i64, levels: Option<&[(String, Level)]>) -> Self {
        let fields = m
            .fields
            .iter()
            .map(|f| FieldView {
                name: f.name.clone(),
                field_type: f.field_type.name(),
                description: f.description.clone(),
                category: f.category.clone(),
                grade: f.grade.clone(),
                identifier: f.identifier.map(|i| i.name()),
                personal: f.personal,
                sensitive: f.sensitive,
                bounds: f.bounds.map(|(lo, hi)| [lo, hi]),
                domain: f.domain.clone(),
                level: levels.map(|levels| {
                    levels
                        .iter()
                        .find(|(n, _)| *n == f.name)
                        .map_or("deny".to_owned(), |(_, l)| l.to_string())
                }),
            })
            .collect();
        DatasetView {
            name: m.name.clone(),
            version,
            title: m.title.clone(),
            description: m.description.clone(),
            database: m.database.name(),
            providing_institution: m.institutions.providing.clone(),
            collecting_institution: m.institutions.collecting.clone(),
            approving_institution: m.institutions.approving.clone(),
            data_form: m.data_form.clone(),
            format: m.format.name(),
            update_frequency: m.update_frequency.name(),
            share: ShareView {
                attribute: m.share.attribute.name(),
                conditions: m.share.conditions.clone(),
                scope: m.share.scope.clone(),
                legal_basis: m.share.legal_basis.clone(),
            },
            open: OpenView {
                attribute: m.open.attribute.name(),
                conditions: m.open.conditions.clone(),
            },
            privacy_unit: m.privacy_unit.clone(),
            region_field: m.region_field.clone(),
            fields,
        }
    }
}

/// `GET /v1/catalog`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Catalog {
    /// The active policy's label (`name@version`).
    pub policy_version: String,
    pub datasets: Vec<DatasetView>,
}

/// One registered version of a catalog entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetVersionView {
    pub version: i64,
    pub registered_at: String,
    pub registered_by: String,
    pub rows: u64,
    pub file_sha256: String,
    /// The manifest as it was registered, TOML.
    pub manifest: String,
}

/// `GET /v1/catalog/{dataset}/versions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetVersions {
    pub dataset: String,
    pub versions: Vec<DatasetVersionView>,
}

/// `POST /v1/datasets`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// The manifest, as TOML text. Its `path` is relative to `DIR/datasets`.
    pub manifest: String,
}

/// A registration's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub dataset: String,
    pub version: i64,
    pub rows: u64,
    /// False when the same manifest over the same file was registered before.
    pub changed: bool,
}

/// `GET /v1/policy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub version: i64,
    pub label: String,
    pub name: String,
    /// The policy file, TOML.
    pub text: String,
}

/// `PUT /v1/policy`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The policy file, as TOML text.
    pub text: String,
}

/// One policy version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersionView {
    pub version: i64,
    pub name: String,
    pub digest: String,
    pub loaded_at: String,
    pub loaded_by: String,
}

impl From<PolicyVersion> for PolicyVersionView {
    fn from(v: PolicyVersion) -> Self {
        PolicyVersionView {
            version: v.version,
            name: v.name,
            digest: v.digest,
            loaded_at: v.loaded_at,
            loaded_by: v.loaded_by,
        }
    }
}

/// `GET /v1/policy/versions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyVersions {
    pub versions: Vec<PolicyVersionView>,
}

/// A grant a principal holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    pub dataset: String,
    /// The fields granted; absent for every field.
    pub fields: Option<Vec<String>>,
    pub purpose: String,
    pub expires_at: String,
}

/// A principal, never its keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalView {
    pub name: String,
    pub role: &'static str,
    pub org: Option<String>,
    /// The region code a region-scoped principal is bound to.
    pub region: Option<String>,
    /// `active` or `suspended`.
    pub status: &'static str,
    pub grants: Vec<GrantView>,
    pub created_at: String,
    /// The new key: in the answer that created it only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl From<&PrincipalRecord> for PrincipalView {
    fn from(r: &PrincipalRecord) -> Self {
        let p = &r.principal;
        PrincipalView {
            name: p.name.clone(),
            role: p.role.name(),
            org: p.org.clone(),
            region: p.region.as_ref().map(|s| s.code().to_owned()),
            status: status_name(r.status),
            grants: p
                .grants
                .iter()
                .map(|g| GrantView {
                    id: g.id.clone(),
                    dataset: g.dataset.clone(),
                    fields: g.fields.clone(),
                    purpose: g.purpose.clone(),
                    expires_at: g.expires_at.to_rfc3339(),
                })
                .collect(),
            created_at: r.created_at.to_rfc3339(),
            api_key: None,
        }
    }
}

pub fn status_name(status: PrincipalStatus) -> &'static str {
    match status {
        PrincipalStatus::Active => "active",
        PrincipalStatus::Suspended => "suspended",
    }
}

/// `GET /v1/principals`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Principals {
    pub principals: Vec<PrincipalView>,
}

/// `POST /v1/principals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipalBody {
    pub name: String,
    /// `consumer`, `modeler`, `approver`, `admin` or `subject`.
    pub role: String,
    pub org: Option<String>,
    /// A region code the principal's queries are bound to.
    pub region: Option<String>,
    /// A subject principal's identifier.
    pub subject: Option<String>,
}

/// `POST /v1/principals/{name}/keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyIssued {
    pub name: String,
    /// The key: in this answer only.
    pub api_key: String,
}

/// `DELETE /v1/principals/{name}/keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeysRevoked {
    pub name: String,
    pub revoked: usize,
}

/// `PUT /v1/principals/{name}/status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// `active` or `suspended`.
    #[schema(pattern = "^(active|suspended)$")]
    pub status: String,
}

/// A status change's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusSet {
    pub name: String,
    pub status: String,
}

/// `GET /v1/audit`'s query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub principal: Option<String>,
    pub dataset: Option<String>,
    /// Entries at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// `ok`, `refused:...`, ...
    pub outcome: Option<String>,
    /// At most this many entries (100 by default).
    pub limit: Option<usize>,
    /// Only entries of this endpoint, exactly (`POST /v1/query`).
    pub endpoint: Option<String>,
    /// Entries before this RFC 3339 time.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Entries before this sequence number: the page after one whose last
    /// entry had it.
    pub before: Option<i64>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub seq: i64,
    pub time: String,
    pub principal: String,
    pub role: String,
    pub purpose: String,
    pub endpoint: String,
    pub request: String,
    pub datasets: Vec<String>,
    pub fields: Vec<String>,
    pub rows: Option<u64>,
    #[schema(value_type = Object)]
    pub privacy: Value,
    pub outcome: String,
}

impl From<AuditRecord> for AuditEntryView {
    fn from(r: AuditRecord) -> Self {
        let e = r.entry;
        AuditEntryView {
            seq: r.seq,
            time: r.time,
            privacy: serde_json::from_str(&e.privacy).unwrap_or(Value::Null),
            principal: e.principal,
            role: e.role,
            purpose: e.purpose,
            endpoint: e.endpoint,
            request: e.request,
            datasets: e.datasets,
            fields: e.fields,
            rows: e.rows,
            outcome: e.outcome,
        }
    }
}

/// `GET /v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// `all`, or `datasets your institution provides`.
    pub scope: &'static str,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainView {
    pub intact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<i64>,
    /// The entry the signed head (`DIR/audit.head`) names: the log reaches it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_head: Option<i64>,
    /// The privacy ledger's rows, chained and reaching their signed head.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_rows: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_entry: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<ChainReport> for ChainView {
    fn from(report: ChainReport) -> Self {
        match report {
            ChainReport::Intact {
                entries,
                checkpoints,
                head,
                ledger_rows,
            } => ChainView {
                intact: true,
                entries: Some(entries),
                checkpoints: Some(checkpoints),
                signed_head: Some(head),
                ledger_rows: Some(ledger_rows),
                first_bad_entry: None,
                reason: None,
            },
            ChainReport::Broken { seq, reason } => ChainView {
                intact: false,
                entries: None,
                checkpoints: None,
                signed_head: None,
                ledger_rows: None,
                first_bad_entry: Some(seq),
                reason: Some(reason),
            },
        }
    }
}
