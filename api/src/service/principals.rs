//! Principals, their keys and their status (Art. 45, 47-48), for admins.
//! Every change is audited; a key appears once, in the answer that made it.

use veil_policies::{Principal, Role};

use super::{Audited, Service, ServiceError};
use crate::store::{NewPrincipal, PrincipalStatus};
use crate::wire::admin::{
    KeyIssued, KeysRevoked, NewPrincipalBody, PrincipalView, Principals, StatusBody, StatusSet,
};

fn require_admin(caller: &Principal) -> Result<(), ServiceError> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ServiceError::forbidden("only an admin manages principals"))
    }
}

/// An admin's key over the network does not make the data authority's
/// approvers: with two of them (or two keys of theirs) it would pass the
/// four-eyes rule alone. The operator creates them and their keys on the
/// host (`veil principal add`), where the store itself is in reach.
fn not_an_authority_approver(
    store: &crate::store::Store,
    role: Role,
    org: Option<&str>,
) -> Result<(), ServiceError> {
    let authority = store.authority()?;
    if role == Role::Approver && authority.is_some() && org == authority.as_deref() {
        return Err(ServiceError::forbidden(
            "approvers of the data authority and their keys are made by the operator (`veil principal add`), not over the API: the four-eyes rule needs two people",
        ));
    }
    Ok(())
}

impl Service {
    /// An admin over the network does not lock the service out of its own
    /// administration: it does not suspend itself or revoke its own keys,
    /// and nobody suspends or revokes the last active admin. The operator
    /// still can, on the host (`veil principal`).
    /// Checked on the writer's connection while the caller holds it, so
    /// that two admins suspending each other at once are taken in turn.
    fn keeps_an_admin(
        store: &crate::store::Store,
        caller: &Principal,
        name: &str,
    ) -> Result<(), ServiceError> {
        if name == caller.name {
            return Err(ServiceError::conflict(
                "an admin does not suspend itself or revoke its own keys: another admin, or the operator (`veil principal`), does",
            ));
        }
        let principals = store.principals()?;
        let active_admin = |r: &&crate::store::PrincipalRecord| {
            r.principal.role == Role::Admin && r.status == PrincipalStatus::Active
        };
        let target_is_admin = principals
            .iter()
            .filter(active_admin)
            .any(|r| r.principal.name == name);
        if target_is_admin && principals.iter().filter(active_admin).count() < 2 {
            return Err(ServiceError::conflict(
                "this is the last active admin: make another admin first",
            ));
        }
        Ok(())
    }

    pub fn principals(&self, caller: &Principal) -> Result<Principals, ServiceError> {
        require_admin(caller)?;
        let records = self.reader()?.principals()?;
        Ok(Principals {
            principals: records.iter().map(PrincipalView::from).collect(),
        })
    }

    /// Creates a principal; the answer carries its first key.
    pub fn add_principal(
        &self,
        caller: &Principal,
        body: &NewPrincipalBody,
        endpoint: &str,
    ) -> Audited<PrincipalView> {
        let result = require_admin(caller).and_then(|()| {
            let role: Role = body.role.parse().map_err(ServiceError::bad_request)?;
            not_an_authority_approver(&*self.reader()?, role, body.org.as_deref())?;
            let (record, key) = self.store().add_principal(&NewPrincipal {
                name: &body.name,
                role,
                org: body.org.as_deref(),
                region: body.region.as_deref(),
                subject: body.subject.as_deref(),
            })?;
            let mut view = PrincipalView::from(&record);
            view.api_key = Some(key.expose().to_owned());
            Ok(view)
        });
        let request = match &result {
            Ok(p) => format!("add principal {} ({})", p.name, p.role),
            Err(_) => "add principal".to_owned(),
        };
        Audited::action(caller, endpoint, request, vec![], result)
    }

    /// One more key for `name`.
    pub fn issue_key(&self, caller: &Principal, name: &str, endpoint: &str) -> Audited<KeyIssued> {
        let result = require_admin(caller).and_then(|()| {
            if let Some(r) = self.reader()?.principal(name)? {
                not_an_authority_approver(
                    &*self.reader()?,
                    r.principal.role,
                    r.principal.org.as_deref(),
                )?;
            }
            let key = self.store().issue_key(name)?;
            Ok(KeyIssued {
                name: name.to_owned(),
                api_key: key.expose().to_owned(),
            })
        });
        let request = match &result {
            Ok(_) => format!("issue key for {name}"),
            Err(_) => "issue key".to_owned(),
        };
        Audited::action(caller, endpoint, request, vec![], result)
    }

    /// Revokes every key of `name`, effective on the next request.
    pub fn revoke_keys(
        &self,
        caller: &Principal,
        name: &str,
        endpoint: &str,
    ) -> Audited<KeysRevoked> {
        let result = require_admin(caller).and_then(|()| {
            let mut store = self.store();
            Self::keeps_an_admin(&store, caller, name)?;
            let revoked = store.revoke_keys(name)?;
            Ok(KeysRevoked {
                name: name.to_owned(),
                revoked,
            })
        });
        let request = match &result {
            Ok(_) => format!("revoke keys of {name}"),
            Err(_) => "revoke keys".to_owned(),
        };
        Audited::action(caller, endpoint, request, vec![], result)
    }

    /// Suspends or reactivates `name` (Art. 47-48).
    pub fn set_status(
        &self,
        caller: &Principal,
        name: &str,
        body: &StatusBody,
        endpoint: &str,
    ) -> Audited<StatusSet> {
        let result = require_admin(caller).and_then(|()| {
            let status = match body.status.as_str() {
                "active" => PrincipalStatus::Active,
                "suspended" => PrincipalStatus::Suspended,
                _ => {
                    return Err(ServiceError::bad_request(
                        "`status` is `active` or `suspended`",
                    ));
                }
            };
            let mut store = self.store();
            if status == PrincipalStatus::Suspended {
                Self::keeps_an_admin(&store, caller, name)?;
            }
            store.set_status(name, status)?;
            Ok(StatusSet {
                name: name.to_owned(),
                status: body.status.clone(),
            })
        });
        let request = match &result {
            Ok(s) => format!("{name} -> {}", s.status),
            Err(_) => "set status".to_owned(),
        };
        Audited::action(caller, endpoint, request, vec![], result)
    }
}
