"""The built-in actions take what planners write: names, words, phrases, lists and comma-separated strings."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from planexe_ax.agents.toolkit import (
    AnalyzeWebsiteParams,
    BuildQuoteParams,
    DraftDocumentParams,
    ManageCsvParams,
    build_quote,
    draft_document,
    manage_csv,
    params_models,
)
from planexe_ax.agents.toolkit.analysis import rubric_score
from planexe_ax.agents.toolkit.quote import compute_quote
from planexe_ax.errors import PermanentError
from tests.helpers.toolkit import Run


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


# -- draft_document ----------------------------------------------------------------------------------------
async def test_any_template_name_gives_a_document_of_that_kind(run: Run) -> None:
    variables = {"attendees": ["Carol", "Larry"], "next_steps": "Send the quote"}
    out = await run(draft_document, {"template": "Meeting agenda", "variables": variables})
    text = (run.out / out["file"]).read_text()
    assert out["title"] == "Meeting agenda"
    assert out["file"].startswith("documents/meeting-agenda-")
    assert text.startswith("# Meeting agenda\n\n## Attendees\n\n- Carol\n- Larry\n\n## Next steps\n\nSend the quote\n")
    assert out["missing_variables"] == []


@pytest.mark.parametrize("name", ["interview_notes", "interview_notes.md", "Interview Notes", "interview-notes.txt"])
def test_a_built_in_template_is_found_by_its_name_in_any_spelling(name: str) -> None:
    from planexe_ax.agents.toolkit.documents import compose

    kind, text, _ = compose(name, {"contact_name": "Carol"})
    assert (kind, text.splitlines()[0]) == ("interview_notes", "# Discovery interview: Carol")


@pytest.mark.parametrize(("given", "expected"), [("MD", "markdown"), ("txt", "text"), (".html", "html")])
def test_output_formats_in_everyday_spelling(given: str, expected: str) -> None:
    assert DraftDocumentParams.model_validate({"template": "x", "output_format": given}).output_format == expected


def test_variables_may_be_a_string_or_a_list() -> None:
    assert DraftDocumentParams.model_validate({"template": "Memo", "variables": "Hi"}).variables == {"content": "Hi"}
    assert DraftDocumentParams.model_validate({"template": "Memo", "variables": ["a"]}).variables == {"items": ["a"]}


# -- build_quote -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("hourly", {"basis": "hourly", "hourly_rate": 75.0, "currency": "USD"}),
        ("fixed", {"basis": "fixed", "hourly_rate": 75.0, "fixed_price": None}),
        ("$80/h", {"basis": "hourly", "hourly_rate": 80.0, "currency": "USD"}),
        ("80 EUR per hour", {"basis": "hourly", "hourly_rate": 80.0, "currency": "EUR"}),
        ("fixed price £4,500", {"basis": "fixed", "fixed_price": 4500.0, "currency": "GBP"}),
        ("flat fee 2k usd", {"basis": "fixed", "fixed_price": 2000.0, "currency": "USD"}),
        ("competitive", {"basis": "hourly", "hourly_rate": 75.0, "note": "competitive"}),
    ],
)
def test_a_rate_structure_may_be_a_word_or_a_phrase(phrase: str, expected: dict[str, Any]) -> None:
    rates = BuildQuoteParams.model_validate({"features": ["a"], "rate_structure": phrase}).rate_structure
    assert {key: getattr(rates, key) for key in expected} == expected
    assert rates.note == phrase


def test_a_fixed_price_is_shared_by_hours_and_adds_up_exactly() -> None:
    params = BuildQuoteParams.model_validate(
        {"features": [{"name": "a", "hours": 1}, {"name": "b", "hours": 2}], "rate_structure": "fixed price $1000"}
    )
    quote = compute_quote(params)
    assert [str(line["amount"]) for line in quote["lines"]] == ["333.33", "666.67"]
    assert str(quote["total"]) == "1000.00"
    assert BuildQuoteParams.model_validate({"features": ["a"], "rate_structure": 90}).rate_structure.hourly_rate == 90


async def test_features_may_be_a_comma_separated_string(run: Run) -> None:
    out = await run(build_quote, {"features": "Mobile layout, Online ordering", "rate_structure": "$80/h"})
    assert (out["hours"], out["total"], out["basis"]) == (16.0, 1280.0, "hourly")
    assert "Pricing: estimate at 80 USD/h (as asked: $80/h)" in (run.out / out["file"]).read_text()


# -- analyze_website ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rubric",
    [
        "mobile friendly, SSL, contact form",
        ["Mobile", "https", "Contact Form"],
        {"responsive": 1, "ssl": 1, "contact": 1},
    ],
)
def test_a_rubric_may_be_a_list_a_string_or_a_mapping_in_everyday_words(rubric: Any) -> None:
    parsed = AnalyzeWebsiteParams.model_validate({"url": "https://x.example", "scoring_rubric": rubric}).scoring_rubric
    assert parsed == {"mobile_viewport": 1.0, "https": 1.0, "contact_form": 1.0}


def test_criteria_that_name_no_signal_are_left_out_of_the_score() -> None:
    signals = {"https": True, "mobile_viewport": False}
    assert rubric_score(signals, {"https": 1.0, "design": 1.0}) == (5, 1.0)
    quality, _ = rubric_score(signals, {"design": 1.0, "speed": 1.0})  # nothing scorable: the default rubric
    assert 1 <= quality <= 5


# -- manage_csv --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("word", "operation"),
    [
        ("create", "write"),
        ("Write", "write"),
        ("add", "append"),
        ("Add rows", "append"),
        ("insert", "append"),
        ("upsert", "update"),
        ("merge", "update"),
        ("remove", "delete"),
        ("get", "read"),
        ("list", "read"),
        ("import", "import_json"),
        ("filter", "filter"),
    ],
)
def test_operations_in_the_usual_words(word: str, operation: str) -> None:
    assert ManageCsvParams.model_validate({"operation": word}).operation == operation


def test_an_operation_nobody_would_mean_is_refused_naming_the_operations() -> None:
    named = "'write', 'append', 'update', 'delete', 'read', 'filter' or 'import_json'"
    with pytest.raises(ValidationError, match=named):
        ManageCsvParams.model_validate({"operation": "juggle"})


async def test_update_delete_and_read_do_what_they_say(run: Run) -> None:
    rows = [{"name": "a", "town": "X"}, {"name": "b", "town": "Y"}]
    await run(manage_csv, {"operation": "create", "file_path": "t.csv", "data": rows})
    updated = await run(
        manage_csv, {"operation": "update", "file_path": "t.csv", "data": [{"name": "b", "town": "Z"}, {"name": "c"}]}
    )
    assert (updated["rows"], updated["changed"]) == (3, 2)
    deleted = await run(manage_csv, {"operation": "remove", "file_path": "t.csv", "where": {"name": "a"}})
    assert (deleted["rows"], deleted["changed"]) == (2, 1)
    with (run.out / "t.csv").open(newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"name": "b", "town": "Z"}, {"name": "c", "town": ""}]
    read = await run(manage_csv, {"operation": "read", "file_path": "t.csv", "where": {"town": "Z"}})
    assert (read["rows"], read["data"]) == (1, [{"name": "b", "town": "Z"}])
    with pytest.raises(PermanentError, match="delete needs where"):
        await run(manage_csv, {"operation": "delete", "file_path": "t.csv"})
    with pytest.raises(PermanentError, match="nothing to read"):
        await run(manage_csv, {"operation": "read", "file_path": "none.csv"})


def test_the_accepted_forms_are_in_the_json_schemas() -> None:
    schemas = {action: model.model_json_schema() for action, model in params_models().items()}
    assert "create" in schemas["manage_csv"]["properties"]["operation"]["enum"]
    rate = schemas["build_quote"]["properties"]["rate_structure"]
    assert {"type": "string"} in rate["anyOf"]
    assert "$80/h" in rate["examples"]
    rubric = schemas["analyze_website"]["properties"]["scoring_rubric"]
    assert {"type": "string"} in rubric["anyOf"]
    assert {"items": {"type": "string"}, "type": "array"} in rubric["anyOf"]
    assert "any other document name" in schemas["draft_document"]["properties"]["template"]["description"]
