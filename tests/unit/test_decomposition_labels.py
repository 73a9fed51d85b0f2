"""The rule decomposer gives an action only when the task is that kind of work: precision and recall per
action against tasks of the four PlanExe samples labelled by hand (tests/fixtures/decomposition_labels.json).

The floors are what the rules reach; a change that lowers one is a change in meaning, to be looked at.
"""

from __future__ import annotations

from collections import Counter

import pytest

from planexe_ax.plans.decompose import DEFAULT_CAPABILITIES
from tests.helpers.decomposition import PERSON, Labelled, Score, labelled, proposed, scores, title_only, whole_tasks
from tests.helpers.planexe_runs import SAMPLES, SAMPLES_DIR

PRECISION_FLOOR = {
    "build_quote": 1.0,
    "create_wireframes": 1.0,
    "draft_document": 1.0,
    "manage_csv": 1.0,
    "schedule_calendar_event": 0.91,
    "search_google_maps": 1.0,
}
RECALL_FLOOR = {
    "build_quote": 0.8,
    "create_wireframes": 1.0,
    "draft_document": 0.86,
    "manage_csv": 0.22,
    "schedule_calendar_event": 0.78,
    "search_google_maps": 0.83,
    PERSON: 0.98,
}


def test_the_labels_cover_150_tasks_of_the_four_samples_with_known_actions() -> None:
    items = labelled()
    assert len(items) >= 200
    assert sum(1 for i in items if i.title) == len(items)
    assert len(Counter(i.sample for i in items)) == 4
    assert len({(i.sample, i.task_id) for i in items}) == len(items)
    assert set().union(*(i.expected for i in items)) <= DEFAULT_CAPABILITIES
    assert sum(1 for i in items if not i.expected) >= 50, "a person's work is labelled as such"


def check(found: dict[str, Score]) -> None:
    for action, floor in PRECISION_FLOOR.items():
        assert found[action].precision >= floor, found[action]
    for action, floor in RECALL_FLOOR.items():
        assert found[action].recall >= floor, found[action]
    given = [s for a, s in found.items() if a != PERSON and s.right + s.wrong]
    assert all(s.precision >= 0.9 for s in given), "every action given is right at least 9 times in 10"


def test_actions_match_the_meaning_of_the_titles() -> None:
    check(scores(labelled(), lambda item: proposed(*title_only(item))))


@pytest.mark.skipif(not SAMPLES, reason=f"PlanExe samples not found at {SAMPLES_DIR}")
def test_actions_match_the_meaning_of_the_whole_tasks_of_the_samples() -> None:
    check(scores(labelled(), whole_tasks(SAMPLES_DIR)))


@pytest.mark.parametrize(
    ("title", "actions"),
    [
        ("Produce Final Risk Assessment Report", {"draft_document"}),
        ("Validate with Arctic Logistics Expert", set()),
        ("Validate Supply Chain Readiness", set()),
        ("Secure Landlord Approval", set()),
    ],
)
def test_the_tasks_named_in_the_issue_are_no_longer_map_searches(title: str, actions: set[str]) -> None:
    item = Labelled("issue", "t1", title, frozenset(actions))
    assert proposed(*title_only(item)) == actions
