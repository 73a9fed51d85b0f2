"""The dashboard in a real headless Chromium against a whole stack: start, pause, resume, approve, complete,
and answer escalations (retry with edited params, complete, skip, fail).

The plan's first task is done by an agent of this test that waits at a gate the test opens, so the run can be
paused and resumed while it is in the middle of that task; its second task waits for an approval given with
the page's inbox buttons.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute, async_playwright, expect
from pydantic import BaseModel

from planexe_ax.agents import Agent, AgentRuntime, TaskContext, capability
from planexe_ax.bus import connect
from tests.helpers.escalation import FIXED_PARAMS, escalating_plan
from tests.helpers.eventually import eventually
from tests.helpers.gateway import Stack
from tests.integration.test_gateway_executions import all_events, people_plan, start, until_item, until_status

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.nats,
    pytest.mark.postgres,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"),
]
log = logging.getLogger(__name__)

WAIT_MS = 10_000
GATE = "dashboard_gate"
PLAN: dict[str, Any] = {
    "plan_id": "dashboard_check",
    "title": "Dashboard check",
    "goal": "Show a run that can be paused, resumed and approved from the page",
    "risks": [{"risk_id": "r1", "description": "The gate never opens", "mitigation": "The test opens it"}],
    "phases": [
        {
            "phase_id": "ph1",
            "name": "Prepare",
            "tasks": [
                {
                    "task_id": "t_gate",
                    "title": "Wait at the gate",
                    "estimated_hours": 4,
                    "subtasks": [{"subtask_id": "s_gate", "action": GATE}],
                },
                {
                    "task_id": "t_review",
                    "title": "Write the note (approved first)",
                    "estimated_hours": 2,
                    "approval_required": True,
                    "prerequisites": ["t_gate"],
                    "subtasks": [
                        {"subtask_id": "s_note", "action": "draft_document", "params": {"template": "# Note\n"}}
                    ],
                },
            ],
        },
        {
            "phase_id": "ph2",
            "name": "Finish",
            "tasks": [
                {
                    "task_id": "t_final",
                    "title": "Write the summary",
                    "estimated_hours": 8,
                    "prerequisites": ["t_review"],
                    "subtasks": [
                        {"subtask_id": "s_summary", "action": "draft_document", "params": {"template": "# Done\n"}}
                    ],
                },
            ],
        },
    ],
}
TASKS = ["t_gate", "t_review", "t_final"]


class Nothing(BaseModel):
    pass


@dataclass
class Gate:
    """Set ``entered`` when the agent starts the gated subtask; it finishes when the test sets ``opened``."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def agent(self) -> Agent:
        @capability(GATE, "Wait until the test opens the gate.")
        async def wait_at_gate(params: Nothing, ctx: TaskContext) -> dict[str, Any]:
            self.entered.set()
            await ctx.progress(50, "waiting at the gate")
            await asyncio.wait_for(self.opened.wait(), 30)
            return {"gate": "opened"}

        return Agent("gatekeeper-1", "Gatekeeper", role="dashboard test", capabilities=[wait_at_gate])


@pytest.fixture
async def gate(stack: Stack) -> AsyncIterator[Gate]:
    """The gate agent, running beside the stack's built-in agents."""
    assert stack.settings.nats_url
    bus = await connect(stack.settings, stack.settings.nats_url, "dashboard-test-agent", role="admin")
    opened = Gate()
    stop = asyncio.Event()
    runner = asyncio.create_task(AgentRuntime(bus, opened.agent()).run(stop))
    try:
        yield opened
    finally:
        opened.opened.set()
        stop.set()
        await asyncio.wait_for(runner, 20)
        await bus.close()


@pytest.fixture
async def page(stack: Stack) -> AsyncIterator[Page]:
    """A page of a headless Chromium, logged in by the dashboard link; errors thrown in the page and content
    security policy violations fail the test."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1500, "height": 1200})
            opened = await context.new_page()
            errors: list[str] = []
            opened.on("pageerror", lambda exc: errors.append(str(exc)))
            opened.on("console", lambda msg: errors.append(msg.text) if "Security Policy" in msg.text else None)
            await opened.goto(f"{stack.url}/?token={stack.token}")
            assert opened.url == f"{stack.url}/", "the link's token is taken out of the address"
            yield opened
            assert not errors, f"errors in the page: {errors}"
        finally:
            await browser.close()


async def api_shows(stack: Stack, execution_id: str, status: str) -> None:
    """Wait until GET /api/executions/{id} shows ``status`` (the stream may be ahead of the read model)."""

    async def shown() -> bool:
        response = await stack.client.get(f"/api/executions/{execution_id}")
        assert response.status_code == 200, response.text
        return bool(response.json()["status"] == status)

    await eventually(shown, timeout=WAIT_MS / 1000)


async def test_dashboard_follows_and_steers_an_execution(stack: Stack, gate: Gate, page: Page, tmp_path: Path) -> None:
    assert (await stack.client.post("/api/plans", json=PLAN)).status_code in (200, 201)
    await page.goto(f"{stack.url}/")
    await expect(page.locator(f"#plan-select option[value={PLAN['plan_id']}]")).to_be_attached(timeout=WAIT_MS)
    await page.select_option("#plan-select", PLAN["plan_id"])
    await page.click("#btn-start")

    await page.wait_for_url(re.compile(r"#/executions/\w+"), timeout=WAIT_MS)
    execution_id = page.url.rsplit("/", 1)[1]
    status = page.locator("#execution-status")
    await asyncio.wait_for(gate.entered.wait(), WAIT_MS / 1000)
    await expect(status).to_have_text("RUNNING", timeout=WAIT_MS)
    await expect(page.locator("#subtask-t_gate-s_gate")).to_have_attribute("data-status", "RUNNING", timeout=WAIT_MS)

    await page.click("#btn-pause")
    await expect(status).to_have_text("PAUSED", timeout=WAIT_MS)
    await api_shows(stack, execution_id, "PAUSED")
    await expect(page.locator("#btn-resume")).to_be_enabled()
    await expect(page.locator("#btn-pause")).to_be_disabled()

    await page.click("#btn-resume")
    await expect(status).to_have_text("RUNNING", timeout=WAIT_MS)
    await api_shows(stack, execution_id, "RUNNING")
    await expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "0")

    gate.opened.set()
    blocker = page.locator('#blockers [data-testid="blocker"][data-task-id="t_review"]')
    await expect(blocker).to_contain_text("AWAITING_APPROVAL", timeout=WAIT_MS)
    await expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "33.3")
    await page.locator('#inbox [data-testid="inbox-answer"][data-action="approve"]').click(timeout=WAIT_MS)
    notice = page.locator("#notices .notice", has_text="approve")
    await expect(notice).to_be_visible(timeout=WAIT_MS)
    await notice.locator(".close").click()
    await expect(notice).to_have_count(0)

    await expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "100", timeout=WAIT_MS)
    await expect(status).to_have_text("COMPLETED", timeout=WAIT_MS)
    await api_shows(stack, execution_id, "COMPLETED")
    await expect(page.locator("#btn-cancel")).to_be_disabled()

    rows = page.locator('#task-tree [data-testid="task-row"]')
    await expect(rows).to_have_count(len(TASKS))
    assert [await row.get_attribute("data-task-id") for row in await rows.all()] == TASKS
    for row in await rows.all():
        await expect(row).to_have_attribute("data-status", "COMPLETED")
    await expect(page.locator("#gantt .vis-item.gantt-actual")).to_have_count(len(TASKS))
    await expect(page.locator("#gantt .vis-item.gantt-planned")).to_have_count(len(TASKS))
    await expect(page.locator("#risks")).to_contain_text("The gate never opens")
    await expect(page.locator("#feed")).to_contain_text("inbox closed: approve")
    await page.select_option("#feed-task", "t_gate")
    await page.select_option("#feed-type", "subtask_progress")
    feed = page.locator('#feed [data-testid="feed-item"]')
    await expect(feed).to_have_count(1)
    await expect(feed).to_contain_text("waiting at the gate")
    await page.select_option("#feed-task", "")
    await page.select_option("#feed-type", "")

    await page.click("#task-t_gate > summary")
    await page.click("#subtask-t_gate-s_gate > summary")
    await expect(page.locator("#subtask-t_gate-s_gate pre.output")).to_contain_text('"gate": "opened"')
    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    log.info("dashboard screenshot at %s", shot, extra={"path": str(shot)})
    assert shot.stat().st_size > 0


async def test_cancel_asks_first(stack: Stack, gate: Gate, page: Page) -> None:
    assert (await stack.client.post("/api/plans", json=PLAN)).status_code in (200, 201)
    response = await stack.client.post("/api/executions", json={"plan_id": PLAN["plan_id"]})
    assert response.status_code == 201, response.text
    execution_id = response.json()["execution_id"]
    patches: list[str] = []
    page.on("request", lambda request: patches.append(request.url) if request.method == "PATCH" else None)
    await page.goto(f"{stack.url}/#/executions/{execution_id}")
    await asyncio.wait_for(gate.entered.wait(), WAIT_MS / 1000)
    status = page.locator("#execution-status")
    await expect(status).to_have_text("RUNNING", timeout=WAIT_MS)

    await page.click("#btn-cancel")
    await expect(page.locator("#confirm-dialog")).to_be_visible()
    await page.click("#confirm-no")
    await expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert patches == [], "keeping it running sends nothing"
    await expect(status).to_have_text("RUNNING")

    await page.click("#btn-cancel")
    await page.click("#confirm-yes")
    await expect(status).to_have_text("CANCELLED", timeout=WAIT_MS)
    await api_shows(stack, execution_id, "CANCELLED")
    assert len(patches) == 1
    for button in ("#btn-pause", "#btn-resume", "#btn-cancel"):
        await expect(page.locator(button)).to_be_disabled()


async def test_reconnects_after_a_drop_and_misses_nothing(stack: Stack, gate: Gate, page: Page) -> None:
    plan = copy.deepcopy(PLAN)
    plan["plan_id"] = "dashboard_no_approval"
    for task in (t for phase in plan["phases"] for t in phase["tasks"]):
        task["approval_required"] = False
    assert (await stack.client.post("/api/plans", json=plan)).status_code in (200, 201)
    response = await stack.client.post("/api/executions", json={"plan_id": plan["plan_id"]})
    assert response.status_code == 201, response.text
    execution_id = response.json()["execution_id"]

    sockets: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    def through(route: WebSocketRoute) -> None:
        sockets.append((route, route.connect_to_server()))

    await page.route_web_socket(re.compile(r"/stream(\?|$)"), through)
    await page.goto(f"{stack.url}/#/executions/{execution_id}")
    await asyncio.wait_for(gate.entered.wait(), WAIT_MS / 1000)
    await expect(page.locator("#subtask-t_gate-s_gate")).to_have_attribute("data-status", "RUNNING", timeout=WAIT_MS)
    page_side, server_side = sockets[0]
    await page_side.close(code=1011, reason="dropped by the test")
    await server_side.close()
    gate.opened.set()  # the rest of the run happens while the page is away or catching up

    await expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "100", timeout=WAIT_MS)
    await expect(page.locator("#execution-status")).to_have_text("COMPLETED")
    assert len(sockets) >= 2
    assert re.search(r"[?]after_seq=\d+$", sockets[1][0].url), sockets[1][0].url
    for task_id in TASKS:
        await expect(page.locator(f"#task-{task_id}")).to_have_attribute("data-status", "COMPLETED")

    async def stored() -> list[int] | None:
        """Every event's sequence once the read model holds the last one (the stream may be ahead of it)."""
        page_ = await stack.client.get(f"/api/executions/{execution_id}/events", params={"limit": 1000})
        items = page_.json()["items"]
        ended = any(i["type"] == "execution_state" and i["data"]["status"] == "COMPLETED" for i in items)
        return sorted(i["seq"] for i in items) if ended else None

    expected = await eventually(stored, timeout=WAIT_MS / 1000)
    feed = page.locator('#feed [data-testid="feed-item"]')
    await expect(feed).to_have_count(len(expected))
    shown = sorted(int(seq) for seq in await feed.evaluate_all("items => items.map(i => i.dataset.seq)"))
    assert shown == expected, "every event once, none missing"


async def open_escalations(stack: Stack, page: Page, plan_id: str) -> tuple[str, Any]:
    """Run the escalating plan and show it until its four escalations are open: the execution id, the inbox items."""
    plan = escalating_plan(plan_id).model_dump(mode="json", by_alias=True)
    assert (await stack.client.post("/api/plans", json=plan)).status_code in (200, 201)
    response = await stack.client.post("/api/executions", json={"plan_id": plan["plan_id"]})
    assert response.status_code == 201, response.text
    execution_id = response.json()["execution_id"]
    await page.goto(f"{stack.url}/#/executions/{execution_id}")
    await expect(page.locator("#execution-status")).to_have_text("BLOCKED", timeout=WAIT_MS)
    items = page.locator('#inbox [data-testid="inbox-item"]')
    await expect(items).to_have_count(4, timeout=WAIT_MS)
    return execution_id, items


async def test_escalations_are_answered_from_the_page(stack: Stack, page: Page) -> None:
    execution_id, items = await open_escalations(stack, page, "escalations_page")
    ids = {t["task_id"]: t["item_id"] for t in (await stack.client.get("/api/inbox")).json()["items"]}

    def item(task_id: str) -> Any:
        return page.locator(f'#inbox [data-testid="inbox-item"][data-item-id="{ids[task_id]}"]')

    def button(task_id: str, action: str) -> Any:
        return item(task_id).locator(f'[data-testid="inbox-answer"][data-action="{action}"]')

    await expect(item("t_retry")).to_contain_text("missing_retry.json is not in the output folder")
    params = item("t_retry").locator('[data-testid="inbox-params"]')
    await expect(params).to_have_value(re.compile("missing_retry.json"))
    await params.fill("[1]")
    await button("t_retry", "retry").click()
    await expect(page.locator("#notices .notice", has_text="must be a JSON object")).to_be_visible()
    await params.fill(json.dumps(FIXED_PARAMS))
    await button("t_retry", "retry").click()
    await expect(items).to_have_count(3, timeout=WAIT_MS)
    await item("t_complete").locator("textarea.inbox-output").fill('{"rows": 12}')
    await button("t_complete", "complete").click()
    await expect(items).to_have_count(2, timeout=WAIT_MS)
    await button("t_skip", "skip").click()
    await expect(items).to_have_count(1, timeout=WAIT_MS)

    for task_id, status in (("t_retry", "COMPLETED"), ("t_complete", "COMPLETED"), ("t_skip", "SKIPPED"),
                            ("t_after", "COMPLETED")):  # fmt: skip
        row = page.locator(f'#task-tree [data-testid="task-row"][data-task-id="{task_id}"]')
        await expect(row).to_have_attribute("data-status", status, timeout=WAIT_MS)
    await expect(page.locator("#subtask-t_skip-s_skip")).to_have_attribute("data-status", "SKIPPED")
    await expect(page.locator("#execution-status")).to_have_text("BLOCKED")

    await button("t_fail", "fail").click()
    await expect(page.locator("#execution-status")).to_have_text("FAILED", timeout=WAIT_MS)
    await api_shows(stack, execution_id, "FAILED")
    history = (await stack.client.get("/api/inbox", params={"include_closed": True})).json()["items"]
    answers = {i["task_id"]: (i["resolution"], i["resolved_by"]) for i in history}
    assert {t: r for t, (r, _) in answers.items()} == {
        "t_retry": "retried",
        "t_complete": "completed",
        "t_skip": "skipped",
        "t_fail": "failed",
    }
    closed = {i["task_id"]: i for i in history}
    assert closed["t_complete"]["resolution_output"] == {"rows": 12}
    assert closed["t_retry"]["resolution_params"] == FIXED_PARAMS
    tree = (await stack.client.get(f"/api/executions/{execution_id}/tasks")).json()
    retried = next(t for p in tree["phases"] for t in p["tasks"] if t["task_id"] == "t_retry")
    assert retried["subtasks"][0]["output"]["rows"] == 1, "the retry ran with the params edited on the page"


async def test_an_earlier_read_of_the_inbox_answered_late_is_not_drawn(stack: Stack, page: Page) -> None:
    """Reads of the inbox overlap; one answered after a later one must not undo it (nor what a person typed)."""
    execution_id, items = await open_escalations(stack, page, "late_read")
    before = (await stack.client.get("/api/inbox", params={"execution_id": execution_id})).json()
    ids = {t["task_id"]: t["item_id"] for t in before["items"]}
    stale = {**before, "items": [i for i in before["items"] if i["task_id"] != "t_complete"]}
    output = page.locator(f'#inbox [data-item-id="{ids["t_complete"]}"] textarea.inbox-output')
    held: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def answer_the_first_late(route: Any) -> None:
        if held.done():
            await route.continue_()
            return
        held.set_result(None)
        await release.wait()  # then answered as read long before: t_skip still open, t_complete not yet
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(stale))

    await page.route(re.compile(r"/api/inbox\?execution_id="), answer_the_first_late)
    skip = f'#inbox [data-item-id="{ids["t_skip"]}"] [data-testid="inbox-answer"][data-action="skip"]'
    await page.locator(skip).click()
    await asyncio.wait_for(held, WAIT_MS / 1000)
    await expect(items).to_have_count(3, timeout=WAIT_MS)  # later reads show the skip
    await output.fill('{"rows": 12}')
    release.set()
    every_read_done = "() => { const d = document.querySelector('#inbox').dataset; return d.reads === d.readsDone; }"
    await page.wait_for_function(every_read_done, timeout=WAIT_MS)
    await expect(items).to_have_count(3)
    await expect(page.locator(f'#inbox [data-item-id="{ids["t_skip"]}"]')).to_have_count(0)
    await expect(output).to_have_value('{"rows": 12}')


async def test_a_browser_without_the_link_is_asked_to_sign_in(stack: Stack, page: Page) -> None:
    await page.context.clear_cookies()
    await page.goto(f"{stack.url}/")
    await expect(page.locator("#notices")).to_contain_text("not signed in", timeout=WAIT_MS)
    await expect(page.locator("#executions-list tr")).to_have_count(0)


async def test_the_scrubber_shows_the_execution_as_it_was_at_an_earlier_event(stack: Stack, page: Page) -> None:
    plan = people_plan("replay_check", approval=True, work=1)
    assert (await stack.client.post("/api/plans", json=plan)).status_code in (200, 201)
    execution_id = (await start(stack, "replay_check"))["execution_id"]
    approval = await until_item(stack, execution_id, "approval")
    assert (await stack.client.post(f"/api/inbox/{approval['item_id']}", json={"action": "approve"})).is_success
    human = await until_item(stack, execution_id, "human_task")
    assert (await stack.client.post(f"/api/inbox/{human['item_id']}", json={"action": "complete"})).is_success
    await until_status(stack, execution_id, "COMPLETED")
    # One place on the scrubber per stored event: a task's move that rode in its subtask's decision shares its seq.
    events = sorted({e["seq"]: e for e in await all_events(stack, execution_id)}.values(), key=lambda e: e["seq"])
    running = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "subtask_state" and e["data"]["subtask_id"] == "w0_doc" and e["data"]["status"] == "RUNNING"
    )
    opened = next(i for i, e in enumerate(events) if e["type"] == "inbox_opened" and e["data"]["kind"] == "approval")

    await page.goto(f"{stack.url}/#/executions/{execution_id}")
    await expect(page.locator("#execution-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    scrubber, sub = page.locator("#replay-range"), page.locator("#subtask-w0-w0_doc")
    await expect(scrubber).to_have_attribute("max", str(len(events) - 1), timeout=WAIT_MS)
    await expect(sub).to_have_attribute("data-status", "COMPLETED")

    await scrubber.fill(str(running))
    await expect(sub).to_have_attribute("data-status", "RUNNING", timeout=WAIT_MS)
    await expect(page.locator("#execution-status")).to_have_text("RUNNING")
    await expect(page.locator("#replay-label")).to_contain_text(f"seq {events[running]['seq']}")
    await expect(page.locator("#gantt .vis-item.gantt-actual")).to_have_count(1)

    await scrubber.fill(str(opened))
    past = page.locator('#inbox [data-testid="inbox-past-item"]')
    await expect(past).to_have_count(1, timeout=WAIT_MS)
    await expect(past).to_have_attribute("data-status", "open")
    await expect(sub).to_have_attribute("data-status", "COMPLETED")

    await page.click("#btn-live")
    await expect(page.locator("#execution-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    await expect(past).to_have_count(0)
    await expect(page.locator("#task-tree [data-testid=task-row][data-status=COMPLETED]")).to_have_count(3)
