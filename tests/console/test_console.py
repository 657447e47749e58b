"""The approvers' console in a real browser, against a real `veil demo`.

Each test signs in as a demo principal in a fresh browser context and does
what an approver or admin does, checking the result through the console and,
where it matters, through the HTTP API as the party it affects.
"""

import re
import sqlite3
import datetime

import pytest
from playwright.sync_api import expect

from browsing import shot, sign_in

ID_NUMBER = re.compile(r"^\d{17}[\dX]$")


def test_each_console_role_signs_in_and_sees_its_own_pages(page, demo):
    for who, scope, has, lacks in [
        ("demo-approver", "数据主管部门", ["审计", "隐私预算", "申请"], ["主体"]),
        ("demo-provider", "数据提供机构", ["审计", "申请"], ["主体"]),
        ("demo-admin", "系统管理", ["主体", "目录"], ["审计", "申请"]),
    ]:
        page.context.clear_cookies()
        sign_in(page, demo, who)
        expect(page.get_by_test_id("who")).to_have_text(who)
        expect(page.locator(".who .scope")).to_have_text(scope)
        nav = page.locator("header nav")
        for label in has:
            expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
        for label in lacks:
            expect(nav.get_by_role("link", name=label, exact=True)).to_have_count(0)
    # The admin's pages are not the approver's: asked directly, refused.
    response = page.goto(demo.url + "/console/audit")
    assert response.status == 403
    expect(page.get_by_test_id("notice")).to_contain_text("您的角色不能使用此页面")


@pytest.mark.parametrize("who", ["demo-consumer", "demo-kunming", "demo-modeler", "demo-subject"])
def test_a_key_of_another_role_cannot_open_the_console(page, demo, who):
    sign_in(page, demo, who)
    expect(page.get_by_test_id("notice")).to_contain_text("the console is for approvers and admins")
    assert page.context.cookies() == [] or all(c["name"] != "veil_console" for c in page.context.cookies())
    for path in ["/console/requests", "/console/audit", "/console/catalog", "/console/principals"]:
        page.goto(demo.url + path)
        assert page.url == demo.url + "/console", path
        expect(page.locator("#key")).to_be_visible()


def test_approving_a_sharing_request_grants_access_that_a_query_then_uses(page, demo):
    query = {"sql": "SELECT id_number FROM social_insurance LIMIT 3", "purpose": "benefits"}
    status, before = demo.api("demo-consumer", "POST", "/v1/query", query)
    assert status == 200, before
    assert all("*" in row[0] for row in before["rows"]), before["rows"]

    sign_in(page, demo, "demo-provider")
    page.get_by_role("link", name="申请", exact=True).click()
    row = page.locator("tr[data-request]").filter(has_text="social_insurance").first
    expect(row).to_contain_text("提供机构 (您)")
    row.get_by_role("link").click()
    expect(page.get_by_test_id("state")).to_contain_text("submitted")
    shot(page, "request")
    page.locator("form[data-action=approve] button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_contain_text("已办理")
    expect(page.get_by_test_id("state")).to_contain_text("approved")
    page.locator("form[data-action=deliver] button[type=submit]").click()
    expect(page.get_by_test_id("state")).to_contain_text("granted")
    expect(page.get_by_test_id("history")).to_contain_text("demo-provider")

    status, after = demo.api("demo-consumer", "POST", "/v1/query", query)
    assert status == 200, after
    assert all(ID_NUMBER.match(row[0]) for row in after["rows"]), after["rows"]
    # Another purpose is still not granted.
    status, other = demo.api("demo-consumer", "POST", "/v1/query", {**query, "purpose": "marketing"})
    assert all("*" in row[0] for row in other["rows"]), other


def test_a_refusal_needs_its_legal_basis_and_the_message_says_so(page, demo):
    status, opened = demo.api(
        "demo-kunming", "POST", "/v1/requests",
        {"kind": "sharing", "dataset": "social_insurance", "purpose": "research"},
    )
    assert status == 201, opened
    sign_in(page, demo, "demo-provider")
    page.goto(f"{demo.url}/console/requests/{opened['id']}")
    form = page.locator("form[data-action=refuse]")
    expect(form.locator("textarea[name='note.legal_basis']")).to_have_attribute("required", "")
    # Past the browser's own check (a script could post it without): the
    # service refuses, and the page says what is missing.
    form.locator("textarea[name='note.legal_basis']").evaluate("e => e.removeAttribute('required')")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_contain_text("must record `legal_basis`")
    expect(page.get_by_test_id("state")).to_contain_text("submitted")
    form = page.locator("form[data-action=refuse]")
    form.locator("textarea[name='note.legal_basis']").fill("Art. 26: research is not a duty this data is shared for")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("state")).to_contain_text("refused")
    expect(page.get_by_test_id("history")).to_contain_text("Art. 26")


def test_an_overdue_request_is_marked_and_listed_first(page, demo):
    status, late = demo.api(
        "demo-kunming", "POST", "/v1/requests",
        {"kind": "sharing", "dataset": "population", "purpose": "elder care visits"},
    )
    assert status == 201, late
    status, fresh = demo.api(
        "demo-kunming", "POST", "/v1/requests",
        {"kind": "sharing", "dataset": "population", "purpose": "school places"},
    )
    assert status == 201, fresh
    # Time passes: the first one's deadline is three weeks ago.
    past = (datetime.date.today() - datetime.timedelta(days=21)).isoformat()
    with sqlite3.connect(demo.data_dir / "veil.db", timeout=30) as db:
        db.execute("UPDATE requests SET due = ? WHERE id = ?", (past, late["id"]))
    sign_in(page, demo, "demo-approver")
    page.goto(demo.url + "/console/requests")
    rows = page.locator("tr[data-request]")
    expect(rows.first).to_have_attribute("data-request", late["id"])
    expect(rows.first).to_have_class(re.compile("overdue"))
    expect(rows.first.get_by_test_id("overdue")).to_contain_text("已逾期")
    fresh_row = page.locator(f"tr[data-request='{fresh['id']}']")
    expect(fresh_row).not_to_have_class(re.compile("overdue"))
    expect(fresh_row).to_contain_text("个工作日")
    shot(page, "requests")


def test_grading_a_field_is_proposed_and_a_second_approver_publishes_it(page, demo):
    sign_in(page, demo, "demo-approver")
    page.goto(demo.url + "/console/catalog/legal_persons")
    row = page.locator("tr[data-field='industry']")
    before = row.locator("td.grade").inner_text()
    target = "L2" if before != "L2" else "L1"
    row.locator("select[name=grade]").select_option(target)
    row.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_contain_text("已提交")
    expect(page.get_by_test_id("changes")).to_contain_text(f'grade = "{target}"')
    request_url = page.url.split("?")[0]
    # The proposer is not offered the approval, and posting it anyway is
    # refused.
    expect(page.locator("form[data-action=approve]")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.input_value()
    refused = page.request.post(request_url + "/approve", form={"csrf": csrf})
    assert refused.status == 403
    assert "not by the one who proposed it" in refused.text()

    page.context.clear_cookies()
    sign_in(page, demo, "demo-reviewer")
    page.goto(request_url)
    page.locator("form[data-action=approve] button[type=submit]").click()
    expect(page.get_by_test_id("state")).to_contain_text("published")
    page.goto(demo.url + "/console/catalog/legal_persons")
    expect(page.locator("tr[data-field='industry'] td.grade")).to_have_text(target)
    shot(page, "catalog")


def test_a_provider_may_not_grade_another_institutions_data(page, demo):
    sign_in(page, demo, "demo-provider")
    page.goto(demo.url + "/console/catalog/population")
    row = page.locator("tr[data-field='phone']")
    expect(row.locator("select[name=grade]")).to_have_count(0)
    # Posted anyway (the form is not offered), the service refuses, audited.
    csrf = page.locator("input[name=csrf]").first.input_value()
    refused = page.request.post(
        demo.url + "/console/catalog/population/grade",
        form={"csrf": csrf, "field": "phone", "grade": "L1"},
    )
    assert refused.status == 403
    assert "its provider's or the data authority's" in refused.text()
    page.reload()
    expect(page.locator("tr[data-field='phone'] td.grade")).not_to_have_text("L1")
    # Its own dataset's fields it may propose.
    page.goto(demo.url + "/console/catalog/social_insurance")
    expect(page.locator("tr[data-field='paid'] select[name=grade]")).to_have_count(1)
    status, entries = demo.api("demo-approver", "GET", "/v1/audit?principal=demo-provider&outcome=refused")
    assert any(e["endpoint"] == "POST /console/catalog/{dataset}/grade" for e in entries["entries"]), entries


def test_a_policy_change_is_checked_at_its_lines_then_proposed_and_approved(page, demo):
    sign_in(page, demo, "demo-approver")
    page.goto(demo.url + "/console/policy")
    original = page.locator("textarea[name=text]").input_value()
    broken = original.replace("max_rows = ", "max_rows = \"many\" # ", 1)
    assert broken != original
    page.locator("textarea[name=text]").fill(broken)
    page.get_by_role("button", name="检查").click()
    expect(page.get_by_test_id("notice")).to_contain_text("个问题")
    problem = page.locator("pre.annotated .problem").first
    expect(problem).to_be_visible()
    line = int(problem.get_attribute("data-line"))
    assert "max_rows" in broken.splitlines()[line - 1]
    shot(page, "policy-problems")
    # Fixed: it checks, then is proposed, and a second approver approves.
    changed = original.replace("max_rows = ", "max_rows = 9999 # was ", 1)
    page.locator("textarea[name=text]").fill(changed)
    page.get_by_role("button", name="检查").click()
    expect(page.get_by_test_id("notice")).to_contain_text("检查通过")
    page.get_by_role("button", name="提交审核").click()
    expect(page.get_by_test_id("notice")).to_contain_text("已提交")
    request_url = page.url.split("?")[0]
    page.context.clear_cookies()
    sign_in(page, demo, "demo-reviewer")
    page.goto(request_url)
    page.locator("form[data-action=approve] button[type=submit]").click()
    expect(page.get_by_test_id("state")).to_contain_text("active")
    page.goto(demo.url + "/console/policy")
    versions = page.get_by_test_id("policy-versions").locator("tbody tr")
    assert versions.count() >= 2
    newest = int(versions.first.locator("td").first.inner_text().lstrip("v"))
    page.goto(f"{demo.url}/console/policy?a={newest - 1}&b={newest}")
    diff = page.get_by_test_id("diff")
    expect(diff.locator("td.del").first).to_contain_text("max_rows")
    expect(diff.locator("td.add").first).to_contain_text("9999")
    shot(page, "policy-diff")
    status, policy = demo.api("demo-approver", "GET", "/v1/policy")
    assert policy["version"] == newest and "max_rows = 9999" in policy["text"]


def test_the_audit_is_filtered_in_place_and_the_chain_is_checked(page, demo):
    # Something to find: a refused sign-in and a refused query.
    sign_in(page, demo, "demo-consumer")
    demo.api("demo-consumer", "POST", "/v1/query", {"sql": "SELECT id_number, cost FROM health_visits"})
    page.context.clear_cookies()
    sign_in(page, demo, "demo-approver")
    page.goto(demo.url + "/console/audit")
    expect(page.get_by_test_id("chain")).to_contain_text("审计链完整")
    expect(page.get_by_test_id("chain")).to_contain_text("最近签名检查点")
    form = page.get_by_test_id("audit-filter")
    form.locator("input[name=endpoint]").fill("POST /console/sign-in")
    form.locator("select[name=outcome]").select_option("refused")
    with page.expect_response(lambda r: "/console/audit?" in r.url and r.request.headers.get("hx-request") == "true"):
        form.get_by_role("button", name="筛选").click()
    rows = page.get_by_test_id("audit").locator("tbody tr")
    expect(rows.first).to_contain_text("demo-consumer")
    for text in rows.all_inner_texts():
        assert "POST /console/sign-in" in text and "refused:forbidden" in text, text
    assert "outcome=refused" in page.url  # the filter is in the address
    # By dataset and principal: the refused query.
    form.locator("input[name=endpoint]").fill("POST /v1/query")
    form.locator("select[name=dataset]").select_option("health_visits")
    form.locator("input[name=principal]").fill("demo-consumer")
    form.get_by_role("button", name="筛选").click()
    expect(page.get_by_test_id("audit").locator("tbody tr").first).to_contain_text("health_visits")
    shot(page, "audit")


def test_a_provider_reads_only_its_own_datasets_entries(page, demo):
    demo.api("demo-consumer", "POST", "/v1/query", {"sql": "SELECT COUNT(*) AS n FROM tax"})
    sign_in(page, demo, "demo-provider")
    page.goto(demo.url + "/console/audit")
    expect(page.get_by_test_id("chain")).to_contain_text("审计链完整")
    expect(page.get_by_test_id("chain")).not_to_contain_text("条记录")
    page.goto(demo.url + "/console/audit?dataset=tax")
    expect(page.get_by_test_id("no-entries")).to_be_visible()
    page.goto(demo.url + "/console/audit")
    for text in page.get_by_test_id("audit").locator("tbody tr").all_inner_texts():
        assert "social_insurance" in text, text


def test_budgets_show_what_a_dp_query_spent(page, demo):
    status, answer = demo.api(
        "demo-consumer", "POST", "/v1/query",
        {"sql": "SELECT month, SUM(usage) AS usage FROM utility_usage GROUP BY month", "epsilon": 0.25},
    )
    assert status == 200, answer
    spent = answer["privacy"]["epsilon_spent"]
    assert spent > 0
    sign_in(page, demo, "demo-approver")
    page.goto(demo.url + "/console/budgets")
    row = page.get_by_test_id("budgets").locator("tbody tr").filter(has_text="demo-consumer").filter(has_text="utility_usage")
    expect(row).to_have_count(1)
    cells = row.locator("td").all_inner_texts()
    assert float(cells[4]) >= spent - 1e-9, cells
    expect(page.get_by_test_id("chart").locator("path")).not_to_have_count(0)
    shot(page, "budgets")


def test_a_form_without_its_token_is_refused(page, demo):
    sign_in(page, demo, "demo-admin")
    page.goto(demo.url + "/console/principals")
    form = page.get_by_test_id("add-principal")
    form.locator("input[name=name]").fill("csrf-victim")
    form.locator("input[name=csrf]").evaluate("e => e.remove()")
    form.get_by_role("button", name="添加").click()
    expect(page.get_by_test_id("notice")).to_contain_text("表单已失效")
    status, listed = demo.api("demo-admin", "GET", "/v1/principals")
    assert "csrf-victim" not in [p["name"] for p in listed["principals"]]


def test_an_admin_adds_a_principal_sees_its_key_once_and_suspends_it(page, demo):
    sign_in(page, demo, "demo-admin")
    page.goto(demo.url + "/console/principals")
    form = page.get_by_test_id("add-principal")
    form.locator("input[name=name]").fill("console-consumer")
    form.locator("select[name=role]").select_option("consumer")
    form.locator("input[name=org]").fill("昆明市医疗保障局")
    form.get_by_role("button", name="添加").click()
    key = page.get_by_test_id("new-key").locator("input").input_value()
    assert key.startswith("veil_")
    demo.keys["console-consumer"] = {"key": key}
    status, _ = demo.api("console-consumer", "GET", "/v1/catalog")
    assert status == 200
    page.goto(demo.url + "/console/principals")
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    assert key not in page.content()
    page.locator("tr[data-principal='console-consumer'] button[data-action=suspend]").click()
    expect(page.locator("tr[data-principal='console-consumer']")).to_contain_text("已暂停")
    status, refused = demo.api("console-consumer", "GET", "/v1/catalog")
    assert status == 403 and refused["error"]["code"] == "forbidden"
    page.locator("tr[data-principal='console-consumer'] button[data-action=revoke]").click()
    status, _ = demo.api("console-consumer", "GET", "/v1/catalog")
    assert status == 401
    shot(page, "principals")


def test_a_revoked_key_ends_its_session_at_the_next_click(page, demo, browser):
    status, issued = demo.api("demo-admin", "POST", "/v1/principals", {"name": "short-lived", "role": "approver", "org": "云南省民政厅 (Yunnan Civil Affairs Department)"})
    assert status == 201, issued
    demo.keys["short-lived"] = {"key": issued["api_key"]}
    sign_in(page, demo, "short-lived")
    expect(page.get_by_test_id("who")).to_have_text("short-lived")
    status, _ = demo.api("demo-admin", "DELETE", "/v1/principals/short-lived/keys")
    assert status == 200
    page.get_by_role("link", name="审计", exact=True).click()
    assert page.url == demo.url + "/console"
    expect(page.locator("#key")).to_be_visible()


def test_signing_out_ends_the_session(page, demo):
    sign_in(page, demo, "demo-approver")
    page.get_by_role("button", name="退出").click()
    expect(page.locator("#key")).to_be_visible()
    page.goto(demo.url + "/console/requests")
    assert page.url == demo.url + "/console"
    status, entries = demo.api("demo-approver", "GET", "/v1/audit?principal=demo-approver&endpoint=POST%20/console/sign-out")
    assert status == 200 and entries["entries"], entries


def test_english_labels_and_a_tablet_width(page, demo):
    sign_in(page, demo, "demo-approver")
    page.get_by_role("link", name="English").click()
    expect(page.locator("header nav")).to_contain_text("Requests")
    page.goto(demo.url + "/console/catalog")
    expect(page.get_by_role("heading", level=1)).to_have_text("Catalog")
    # Readable at 1280 px: nothing wider than the window.
    for path in ["/console", "/console/catalog", "/console/requests", "/console/policy", "/console/budgets"]:
        page.goto(demo.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280, path
    page.set_viewport_size({"width": 768, "height": 1024})
    for path in ["/console", "/console/requests", "/console/audit", "/console/budgets"]:
        page.goto(demo.url + path)
        expect(page.locator("header nav")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 768, path
    shot(page, "tablet-requests")


def test_screenshots_of_every_page(page, demo):
    """Artefacts for CI and the README (scripts/console-screenshots)."""
    sign_in(page, demo, "demo-approver")
    for name, path in [
        ("home", "/console"),
        ("catalog-list", "/console/catalog"),
        ("catalog-population", "/console/catalog/population"),
        ("policy", "/console/policy"),
        ("requests-all", "/console/requests?all=1"),
        ("audit-all", "/console/audit"),
        ("budgets-all", "/console/budgets"),
    ]:
        response = page.goto(demo.url + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        shot(page, name)
    page.context.clear_cookies()
    page.goto(demo.url + "/console")
    shot(page, "sign-in")
