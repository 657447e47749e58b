//! The console's labels in Chinese (first: the users are Yunnan's
//! institutions) and English. A label not in the table shows as its key
//! (a state or action name the table does not know yet), and a test
//! checks that every key the console's sources name is in it.

/// The language cookie's name.
pub const COOKIE: &str = "veil_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn from_code(code: &str) -> Lang {
        match code {
            "en" => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub fn from_cookie(value: Option<&str>) -> Lang {
        value.map_or(Lang::Zh, Lang::from_code)
    }

    /// The BCP 47 tag, for `<html lang>` and the switch's address.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language's own name, for the switch.
    pub fn label(self) -> &'static str {
        match self {
            Lang::Zh => "中文",
            Lang::En => "English",
        }
    }

    /// The label of `key`, or `key` itself when the table has none.
    pub fn t(self, key: &str) -> &str {
        match LABELS.binary_search_by(|(k, _, _)| (*k).cmp(key)) {
            Ok(i) => match self {
                Lang::Zh => LABELS[i].1,
                Lang::En => LABELS[i].2,
            },
            Err(_) => key,
        }
    }
}

/// (key, Chinese, English), sorted by key (a test checks).
const LABELS: &[(&str, &str, &str)] = &[
    ("actions", "操作", "Actions"),
    ("active", "有效", "active"),
    ("active_policy", "现行策略", "Active policy"),
    ("add", "添加", "Add"),
    ("add_principal", "添加主体", "Add a principal"),
    ("admin", "管理员", "admin"),
    ("agreement", "协议记录", "Agreement"),
    ("all_principals", "全部主体", "all principals"),
    ("answer", "答复", "Answer"),
    ("answered", "已答复", "answered"),
    ("any", "全部", "any"),
    ("api_key", "API 密钥", "API key"),
    ("app_name", "veil 审批台", "veil console"),
    ("applicant", "申请方", "applicant"),
    ("approve", "同意", "Approve"),
    ("approved", "已同意", "approved"),
    ("approver", "审批人", "approver"),
    ("approver_institution", "审核机构", "Approving institution"),
    (
        "assumed_weekdays",
        "以下年份按周一至周五计算：",
        "Counted Monday to Friday in:",
    ),
    (
        "attributes",
        "目录属性（第13、33条）",
        "Catalog attributes (Art. 13, 33)",
    ),
    ("authority", "数据主管部门", "data authority"),
    ("awaiting_commitment", "待签安全承诺", "awaiting commitment"),
    ("bad_form", "表单无法读取。", "The form could not be read."),
    ("budget", "预算", "Budget"),
    (
        "budgets_intro",
        "每个主体在每个数据集上的差分隐私预算：本周期已用与剩余，以及累计 ε 的变化。",
        "Each principal's differential-privacy budget per dataset: spent and left in the current period, and the cumulative ε over time.",
    ),
    ("by", "执行人", "By"),
    (
        "calendar_note",
        "期限按国务院办公厅公布的节假日安排以工作日计算。",
        "Deadlines count working days on the State Council's published holiday calendar.",
    ),
    ("catalog_change", "目录变更", "catalog change"),
    (
        "catalog_intro",
        "已登记的数据资源目录。",
        "The registered data resource catalog.",
    ),
    ("category", "分类", "Category"),
    ("chain_broken", "审计链已损坏", "Audit chain BROKEN"),
    ("chain_intact", "审计链完整", "Audit chain intact"),
    ("change_grade", "调整分级", "Change grade"),
    ("change_policy", "修改策略", "Change the policy"),
    ("check", "检查", "Check"),
    ("checkpoints", "个签名检查点", "signed checkpoints"),
    ("collector", "采集机构", "collecting institution"),
    ("comment", "备注（可选）", "Comment (optional)"),
    ("commit", "签署承诺", "Commit"),
    ("compare", "比较", "Compare"),
    ("complaint", "投诉", "complaint"),
    ("conditional", "有条件", "conditional"),
    ("consumer", "数据使用方", "consumer"),
    ("correction", "更正", "correction"),
    ("created_at", "创建时间", "Created"),
    (
        "csrf_refused",
        "表单已失效或来自其他站点，请刷新页面后重试。",
        "This form is stale or came from another site; reload the page and try again.",
    ),
    ("cumulative_epsilon", "累计 ε", "Cumulative ε"),
    ("data_form", "数据形态", "Data form"),
    ("database", "数据库类型", "Database"),
    ("dataset", "数据集", "Dataset"),
    ("datasets", "个数据集", "datasets"),
    ("day", "每日", "daily"),
    ("days_left", "剩余工作日", "Working days left"),
    (
        "decision_table_intro",
        "各角色在无授权与有授权时对每个字段的披露级别（由现行策略决定）。",
        "The disclosure level each role gets for each field, without and with a grant, under the active policy.",
    ),
    ("deliver", "交付", "Deliver"),
    ("destroy", "销毁", "Destroy"),
    ("destroyed", "已销毁", "destroyed"),
    ("detail", "申请内容", "What is asked"),
    (
        "diff_against_current",
        "与现行版本相比的变更：",
        "Changes against the version in force:",
    ),
    ("diff_of", "差异", "Diff"),
    ("digest", "摘要", "Digest"),
    ("dismiss", "驳回投诉", "Dismiss"),
    ("dismissed", "已驳回", "dismissed"),
    ("done", "完成。", "Done."),
    (
        "done_proposed",
        "已提交，等待数据主管部门另一名审批人审核。",
        "Proposed; a second approver of the data authority reviews it.",
    ),
    (
        "done_revoked",
        "该主体的全部密钥已吊销。",
        "Every key of the principal is revoked.",
    ),
    ("done_status", "状态已更新。", "Status changed."),
    (
        "done_step",
        "已办理，记录已写入审计日志。",
        "Step taken and written to the audit log.",
    ),
    ("due", "办理期限", "Due"),
    ("emergency_data", "应急数据", "emergency data"),
    ("endpoint", "接口", "Endpoint"),
    ("entries", "条记录", "entries"),
    ("error", "出错", "Error"),
    ("extend", "延期", "Extend"),
    ("extended", "已延期", "extended"),
    ("field", "字段", "Field"),
    ("fields", "字段", "Fields"),
    ("filter", "筛选", "Filter"),
    ("finding", "核查结论", "Finding"),
    (
        "finished",
        "已办结，无后续步骤。",
        "Finished: no step leads on.",
    ),
    ("first_bad_entry", "首个异常记录", "first bad entry"),
    ("forward", "转交", "Forward"),
    ("from", "原状态", "From"),
    ("grade", "分级", "Grade"),
    ("grant", "授权", "Grant"),
    ("grant_days", "授权天数", "Grant days"),
    ("granted", "已授权", "granted"),
    ("grants", "授权", "Grants"),
    ("history", "办理记录", "History"),
    (
        "home_intro",
        "待办事项与现行配置一览。",
        "What waits on you, and what is in force.",
    ),
    ("in_use", "使用中", "in use"),
    ("institution", "所属机构", "Institution"),
    (
        "key_unknown",
        "该 API 密钥不存在或已吊销。",
        "This API key is unknown or revoked.",
    ),
    ("kind", "类型", "Kind"),
    (
        "last_checkpoint",
        "最近签名检查点",
        "last signed checkpoint",
    ),
    ("left", "剩余", "left"),
    ("legal_basis", "法律依据", "Legal basis"),
    ("lines_changed", "行有变更", "lines changed"),
    ("loaded_at", "生效时间", "Loaded"),
    ("loaded_by", "生效人", "Loaded by"),
    ("modeler", "建模方", "modeler"),
    ("month", "每月", "monthly"),
    ("name", "名称", "Name"),
    ("nav_audit", "审计", "Audit"),
    ("nav_budgets", "隐私预算", "Budgets"),
    ("nav_catalog", "目录", "Catalog"),
    ("nav_home", "首页", "Home"),
    ("nav_policy", "策略", "Policy"),
    ("nav_principals", "主体", "Principals"),
    ("nav_requests", "申请", "Requests"),
    ("never_renews", "不重置", "never renews"),
    ("new_key_for", "新 API 密钥：", "New API key for"),
    (
        "new_key_once",
        "密钥只显示这一次，请立即复制并妥善保管。",
        "The key is shown this once: copy it now and keep it safe.",
    ),
    ("next_page", "下一页", "Next page"),
    ("next_steps", "可办理的步骤", "Steps you may take"),
    (
        "no_entries",
        "没有符合条件的审计记录。",
        "No audit entry matches.",
    ),
    ("no_requests", "没有待办申请。", "No open request."),
    (
        "no_spending",
        "尚无隐私预算支出。",
        "No privacy budget spent yet.",
    ),
    ("no_such_action", "没有这个操作。", "No such action."),
    ("no_such_dataset", "没有这个数据集。", "No such dataset."),
    ("none", "无", "none"),
    ("not_open", "不予开放", "not open"),
    ("not_shared", "不予共享", "not shared"),
    ("notes", "记录", "Notes"),
    ("open", "开放属性", "Open"),
    ("open_data", "开放数据", "open data"),
    ("open_proposals", "待审核的策略变更", "Open proposals"),
    ("open_requests", "待办申请", "open requests"),
    ("opened_request", "提交申请", "opened"),
    ("opening_withdrawn", "已撤销开放", "opening withdrawn"),
    ("outcome", "结果", "Outcome"),
    ("outcome_ok", "成功", "ok"),
    ("outcome_refused", "被拒绝", "refused"),
    ("overdue", "已逾期", "overdue"),
    (
        "page_not_for_role",
        "您的角色不能使用此页面",
        "This page is not for your role",
    ),
    ("period", "周期", "Period"),
    ("personal", "个人信息", "personal"),
    (
        "policy_authority_only",
        "分类分级规则由数据主管部门制定（第11条）：只有其审批人可以提交修改，由另一名审批人批准。",
        "The grading rules are the data authority's (Art. 11): only its approvers propose a change, which a second one approves.",
    ),
    ("policy_change", "策略变更", "policy change"),
    (
        "policy_checks_pass",
        "检查通过，没有发现问题。",
        "The checks pass: no problem found.",
    ),
    ("policy_text", "策略文本（TOML）", "Policy text (TOML)"),
    ("policy_version", "策略版本", "Policy version"),
    ("principal", "主体", "Principal"),
    ("principal_issue", "签发新密钥", "Issue a key"),
    ("principal_resume", "恢复", "Resume"),
    ("principal_revoke", "吊销密钥", "Revoke keys"),
    ("principal_suspend", "暂停", "Suspend"),
    ("privacy", "隐私支出", "Privacy"),
    ("privacy_unit", "隐私单元", "Privacy unit"),
    (
        "problems_found",
        "个问题，尚未提交：",
        "problems; nothing was proposed:",
    ),
    ("product", "核验产品", "Verification product"),
    (
        "products_templates",
        "核验产品与模型模板",
        "Verification products and model templates",
    ),
    ("propose", "提交审核", "Propose"),
    ("protections", "保护属性", "Protections"),
    ("provider", "提供机构", "provider"),
    ("published", "已发布", "published"),
    ("purpose", "用途", "Purpose"),
    ("qualification", "开发资质", "qualification"),
    ("qualified", "已具备资质", "qualified"),
    ("quarter", "每季度", "quarterly"),
    ("reason", "理由", "Reason"),
    ("record", "记录", "Record"),
    ("refuse", "拒绝", "Refuse"),
    ("refused", "已拒绝", "Refused"),
    ("region", "地区", "Region"),
    ("region_field", "地区字段", "Region field"),
    ("registered_at", "登记时间", "Registered"),
    ("registered_by", "登记人", "Registered by"),
    ("reject", "不予批准", "Reject"),
    ("rejected", "未批准", "rejected"),
    ("request", "申请", "Request"),
    (
        "requests_intro",
        "按期限排列：逾期的在前。",
        "By deadline: overdue ones first.",
    ),
    ("restore", "恢复开放", "Restore"),
    ("restored", "已恢复", "restored"),
    ("revoke", "撤销", "Revoke"),
    ("revoked", "已撤销", "revoked"),
    ("role", "角色", "Role"),
    ("rows", "行数", "Rows"),
    ("scope", "范围", "Scope"),
    ("scope_admin", "系统管理", "administration"),
    (
        "scope_all",
        "全部记录（数据主管部门）",
        "every entry (the data authority)",
    ),
    ("scope_authority", "数据主管部门", "data authority"),
    (
        "scope_own_datasets",
        "本机构提供的数据集",
        "datasets your institution provides",
    ),
    (
        "scope_own_datasets_summed",
        "本机构提供的数据集（按数据集汇总，不区分使用方）",
        "datasets your institution provides, summed over principals",
    ),
    ("scope_provider", "数据提供机构", "providing institution"),
    ("seal", "封存", "Seal"),
    ("sealed", "已封存", "sealed"),
    ("security_commitment", "安全承诺", "Security commitment"),
    ("sensitive", "敏感个人信息", "sensitive"),
    (
        "session_idle",
        "15 分钟无操作将自动退出。",
        "You are signed out after 15 minutes without activity.",
    ),
    ("share", "共享属性", "Share"),
    ("sharing", "共享", "sharing"),
    ("show_all", "显示全部", "Show all"),
    ("show_diff", "显示差异", "Show the diff"),
    ("show_open", "只看待办", "Open ones only"),
    ("sign_in", "登录", "Sign in"),
    (
        "sign_in_hint",
        "密钥只用于本次会话，不会保存在浏览器中。",
        "The key is used for this session only and is not kept in the browser.",
    ),
    (
        "sign_in_intro",
        "审批人和管理员使用自己的 API 密钥登录。",
        "Approvers and admins sign in with their API key.",
    ),
    (
        "sign_in_title",
        "登录 veil 审批台",
        "Sign in to the veil console",
    ),
    ("sign_out", "退出", "Sign out"),
    ("since", "起始时间", "Since"),
    ("spent", "已用", "spent"),
    ("state", "状态", "State"),
    ("state_active", "正常", "active"),
    ("state_blocked", "已停用", "blocked"),
    ("state_destroyed", "已销毁", "destroyed"),
    ("state_sealed", "已封存", "sealed"),
    ("state_suspended", "已暂停开放", "suspended"),
    ("state_withdrawn", "已撤销开放", "withdrawn"),
    ("status", "状态", "Status"),
    ("step", "步骤", "Step"),
    ("subject", "数据主体", "subject"),
    (
        "subject_id",
        "主体证件号（数据主体）",
        "Subject identifier (subjects)",
    ),
    ("submitted", "已提交", "submitted"),
    ("suspend", "暂停开放", "Suspend"),
    ("suspended", "已暂停", "suspended"),
    ("template", "模型模板", "Model template"),
    ("time", "时间", "Time"),
    ("title", "名称", "Title"),
    ("to", "新状态", "To"),
    ("today_is", "今天是", "Today is"),
    ("unchanged_lines", "行未变", "unchanged lines"),
    ("unconditional", "无条件", "unconditional"),
    ("until", "截止时间", "Until"),
    ("update_frequency", "更新频率", "Update frequency"),
    ("usage_agreement", "使用协议", "Usage agreement"),
    ("used", "使用比例", "Used"),
    ("verify_chain", "校验审计链", "Verify the audit chain"),
    ("version", "版本", "Version"),
    ("versions", "历史版本", "Versions"),
    ("waiting_on", "等待他方办理：", "Waiting on others:"),
    ("week", "每周", "weekly"),
    ("whose_step", "待办方", "Whose step"),
    ("with_authority", "主管部门处理中", "with the authority"),
    ("with_grant", "有授权", "with a grant"),
    ("withdraw", "撤回", "Withdraw"),
    ("withdraw_opening", "撤销开放", "Withdraw the opening"),
    ("withdrawn", "已撤回", "withdrawn"),
    ("without_grant", "无授权", "without"),
    ("working_days", "个工作日", "working days"),
    ("working_days_left", "个工作日剩余", "working days left"),
    ("year", "每年", "yearly"),
    ("you", "您", "you"),
    ("you_are", "您的身份", "You are"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_duplicates_and_complete() {
        for pair in LABELS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (k, zh, en) in LABELS {
            assert!(!zh.is_empty() && !en.is_empty(), "{k}");
        }
        assert_eq!(Lang::Zh.t("nav_audit"), "审计");
        assert_eq!(Lang::En.t("nav_audit"), "Audit");
        assert_eq!(Lang::En.t("no-such-key"), "no-such-key");
    }

    /// Every `t("key")` in the console's sources, and every state, action,
    /// note, kind, party and role the requests and principals show, has a
    /// label in both languages.
    #[test]
    fn every_key_the_console_names_has_a_label() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("layout.rs"),
            include_str!("signin.rs"),
            include_str!("catalog.rs"),
            include_str!("policy.rs"),
            include_str!("requests.rs"),
            include_str!("audit.rs"),
            include_str!("budgets.rs"),
            include_str!("principals.rs"),
        ];
        let known = |k: &str| LABELS.iter().any(|(key, _, _)| *key == k);
        for source in sources {
            for piece in source.split(".t(\"").skip(1) {
                let key: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if piece[key.len()..].starts_with("\")") {
                    assert!(known(&key), "no label for `{key}`");
                }
            }
        }
        use veil_policies::requests::{Kind, Party, next_steps, requires};
        let kinds = [
            Kind::Sharing,
            Kind::OpenData,
            Kind::Correction,
            Kind::Complaint,
            Kind::EmergencyData,
            Kind::CatalogChange,
            Kind::Qualification,
            Kind::PolicyChange,
        ];
        for kind in kinds {
            assert!(known(kind.name()), "{kind}");
        }
        for p in [
            Party::Applicant,
            Party::Provider,
            Party::Collector,
            Party::Authority,
        ] {
            assert!(known(p.name()), "{p}");
        }
        // Every state reachable from a first state, and every step on the way.
        let mut states: Vec<(Kind, String)> = kinds
            .iter()
            .flat_map(|&k| {
                ["submitted", "with_authority", "in_use", "granted"]
                    .iter()
                    .map(move |s| (k, (*s).to_owned()))
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some((kind, state)) = states.pop() {
            if !seen.insert((kind.name(), state.clone())) {
                continue;
            }
            for (action, _) in next_steps(kind, &state) {
                assert!(known(action), "no label for the step `{action}`");
                for note in requires(kind, action) {
                    assert!(known(note), "no label for the note `{note}`");
                }
                let parties = [
                    Party::Applicant,
                    Party::Provider,
                    Party::Collector,
                    Party::Authority,
                ];
                let notes = requires(kind, action)
                    .iter()
                    .map(|n| ((*n).to_owned(), "x".to_owned()))
                    .collect();
                let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
                if let Ok(moved) = veil_policies::requests::act(
                    kind, &state, None, action, &parties, &notes, today,
                ) {
                    assert!(
                        known(moved.state),
                        "no label for the state `{}`",
                        moved.state
                    );
                    states.push((kind, moved.state.to_owned()));
                }
            }
        }
        for role in [
            "consumer",
            "modeler",
            "approver",
            "admin",
            "subject",
            "active",
            "suspended",
        ] {
            assert!(known(role), "{role}");
        }
        for period in ["day", "week", "month", "quarter", "year"] {
            assert!(known(period), "{period}");
        }
        for a in ["unconditional", "conditional", "not_shared", "not_open"] {
            assert!(known(a), "{a}");
        }
    }
}
