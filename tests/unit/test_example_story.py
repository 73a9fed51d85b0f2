"""The shipped example tells one story with the simulators' answers: the client of the final quote is one of
the prospects the map search finds (and one the qualification keeps), and every email that thanks someone
for a call follows a call to that person that was answered."""

from __future__ import annotations

from typing import Any

from planexe_ax.agents.toolkit.analysis import score_row
from planexe_ax.agents.toolkit.maps import SearchGoogleMapsParams, simulate_search
from planexe_ax.agents.toolkit.phone import MakePhoneCallParams, simulate_call
from planexe_ax.bus import Plan, Subtask
from planexe_ax.cli import example_plan_path, load_plan


def steps(plan: Plan, action: str) -> list[tuple[int, Subtask]]:
    """(position in the plan, subtask) of every subtask with ``action``."""
    order = [sub for task in plan.tasks() for sub in task.subtasks]
    return [(i, sub) for i, sub in enumerate(order) if sub.action == action]


def prospects(plan: Plan) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _, search in steps(plan, "search_google_maps"):
        found += simulate_search(SearchGoogleMapsParams.model_validate(search.params))
    return found


def test_the_client_of_the_final_quote_is_a_prospect_the_search_finds_and_the_qualification_keeps() -> None:
    plan = load_plan(example_plan_path())
    (_, quote), *_ = reversed(steps(plan, "build_quote"))
    client = quote.params["client"]
    matches = [p for p in prospects(plan) if p["business_name"] == client]
    assert matches, f"{client} is not among the prospects"
    (prospect,) = matches
    kept = score_row({"website_url": prospect["website_url"]})
    assert kept["website_kind"] == "none", "the outreach goes to leads without an independent website"
    calls = [sub.params for _, sub in steps(plan, "make_phone_call")]
    assert {c["phone"] for c in calls} == {prospect["phone"]}
    assert {c["contact_name"] for c in calls} == {prospect["contact_name"]}
    emails = [address for _, sub in steps(plan, "send_email") for address in sub.params["to"]]
    assert set(emails) == {prospect["email"]}
    invites = [sub.params["contact"] for _, sub in steps(plan, "schedule_calendar_event")]
    assert set(invites) == {f"{prospect['contact_name']} <{prospect['email']}>"}


def test_an_email_that_thanks_for_a_call_follows_an_answered_call() -> None:
    plan = load_plan(example_plan_path())
    calls = steps(plan, "make_phone_call")
    thanked = [(i, sub) for i, sub in steps(plan, "send_email") if "call" in sub.params["body"].lower()]
    assert thanked, "the example thanks someone for a call"
    for position, email in thanked:
        before = [sub for i, sub in calls if i < position]
        assert before, f"{email.subtask_id} thanks for a call that comes later"
        outcome = simulate_call(MakePhoneCallParams.model_validate(before[-1].params))
        assert outcome["outcome"] == "answered", f"{email.subtask_id} thanks for a call that was {outcome['outcome']}"
        assert outcome["interest_level"] >= 5, "a follow-up goes to an interested party"
    for _, call in calls:
        assert simulate_call(MakePhoneCallParams.model_validate(call.params))["outcome"] == "answered"
