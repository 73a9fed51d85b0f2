"""The toolkit actions that work on local files only: each writes a valid file and returns a small output."""

from __future__ import annotations

import csv
import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydantic import ValidationError

from planexe_ax.agents import CapabilityOutput
from planexe_ax.agents.toolkit import (
    BuildQuoteParams,
    CreateWireframesParams,
    DraftDocumentParams,
    MakePhoneCallParams,
    ManageCsvParams,
    ScheduleCalendarEventParams,
    SearchGoogleMapsParams,
    analyze_website,
    build_quote,
    create_wireframes,
    draft_document,
    make_phone_call,
    manage_csv,
    schedule_calendar_event,
    search_google_maps,
)
from planexe_ax.agents.toolkit.calendar_invite import fold
from planexe_ax.agents.toolkit.maps import simulate_search
from planexe_ax.agents.toolkit.phone import simulate_call
from planexe_ax.errors import PermanentError
from tests.helpers.toolkit import Run


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


# ------------------------------------------------------------------------------------------ simulators
def test_maps_simulator_is_deterministic_and_depends_on_params() -> None:
    params = SearchGoogleMapsParams(query="dog breeder", location="Hampton, CT", max_results=20)
    first, again = simulate_search(params), simulate_search(params)
    other = simulate_search(SearchGoogleMapsParams(query="alpaca farm", location="Hampton, CT", max_results=20))
    assert first == again
    assert first != other
    assert 10 <= len(first) <= 20
    assert all("-555-01" in r["phone"] and r["town"] == "Hampton" for r in first)
    assert all(r["website_url"] == "" or ".example" in r["website_url"] for r in first)


async def test_maps_search_writes_and_merges_raw_results(run: Run) -> None:
    out = await run(search_google_maps, {"query": "dog breeder", "location": "Hampton, CT", "max_results": 8})
    assert out["simulator"] is True
    assert "simulator" in out["source"]
    assert out["file"] == "raw_search_results.json"
    assert out["new"] == out["found"] == out["total"]
    again = await run(search_google_maps, {"query": "dog breeder", "location": "Hampton, CT", "max_results": 8})
    assert again["new"] == 0
    assert again["total"] == out["total"]
    more = await run(search_google_maps, {"query": "yorkie breeder", "location": "Mystic, CT", "max_results": 8})
    stored = json.loads((run.out / "raw_search_results.json").read_text())
    assert stored["simulator"] is True
    assert len(stored["searches"]) == 2
    assert len(stored["results"]) == out["total"] + more["new"]


def test_phone_simulator_is_deterministic_and_depends_on_params() -> None:
    outcomes = {
        simulate_call(MakePhoneCallParams(phone=f"860-555-01{i:02d}", script="hi"))["outcome"] for i in range(30)
    }
    assert outcomes <= {"answered", "voicemail", "no_answer"}
    assert len(outcomes) > 1
    one = MakePhoneCallParams(phone="860-555-0142", script="pitch")
    assert simulate_call(one) == simulate_call(one)
    results = [simulate_call(MakePhoneCallParams(phone="860-555-0142", script=f"pitch {i}")) for i in range(10)]
    assert len({json.dumps(r, sort_keys=True) for r in results}) > 1


async def test_phone_call_writes_a_labelled_transcript(run: Run) -> None:
    out = await run(make_phone_call, {"phone": "860-555-0142", "script": "Hi, this is Larry", "contact_name": "Carol"})
    assert out["simulator"] is True
    text = (run.out / out["transcript"]).read_text()
    assert text.startswith("# SIMULATED call to Carol")
    assert "no call was placed" in text
    silent = await run(make_phone_call, {"phone": "860-555-0142", "record": False})
    assert "transcript" not in silent
    with pytest.raises(ValidationError):
        MakePhoneCallParams(phone="12")


# ------------------------------------------------------------------------------------------ csv
async def test_manage_csv_builds_prospects_from_search_results_and_filters(run: Run) -> None:
    found = await run(search_google_maps, {"query": "dog breeder", "location": "Hampton, CT", "max_results": 12})
    built = await run(manage_csv, {"operation": "import_json"})
    assert built["file"] == "PROSPECTS.csv"
    assert built["rows"] == found["total"]
    again = await run(manage_csv, {"operation": "import_json"})
    assert again["changed"] == 0
    assert again["rows"] == found["total"]
    with (run.out / "PROSPECTS.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"business_name", "contact_name", "phone", "email", "town", "website_url"} <= set(rows[0])
    filtered = await run(manage_csv, {"operation": "filter", "where": {"town": "Hampton"}, "output_path": "h.csv"})
    assert filtered["rows"] == len(rows)
    none = await run(manage_csv, {"operation": "filter", "where": {"town": "Nowhere"}})
    assert none["rows"] == 0
    assert none["file"] == "PROSPECTS_filtered.csv"


async def test_manage_csv_write_append_and_numeric_filter(run: Run) -> None:
    await run(manage_csv, {"operation": "write", "file_path": "n.csv", "data": [{"name": "a", "score": 1}]})
    appended = await run(
        manage_csv, {"operation": "append", "file_path": "n.csv", "data": [{"name": "b", "score": 5, "note": "x"}]}
    )
    assert appended["columns"] == ["name", "score", "note"]
    assert appended["rows"] == 2
    kept = await run(manage_csv, {"operation": "filter", "file_path": "n.csv", "min_values": {"score": 4}})
    with (run.out / kept["file"]).open(newline="") as fh:
        assert [r["name"] for r in csv.DictReader(fh)] == ["b"]
    with pytest.raises(PermanentError, match="outside the output folder"):
        await run(manage_csv, {"operation": "write", "file_path": "../escape.csv", "data": []})
    with pytest.raises(ValidationError):
        ManageCsvParams.model_validate({"operation": "drop"})


async def test_analyze_website_scores_csv_rows_deterministically(run: Run) -> None:
    rows = [
        {"business_name": "Bittersweet Farm", "website_url": ""},
        {"business_name": "Alpaca Kids", "website_url": "https://facebook.example/alpaca"},
        {"business_name": "Marie's Yorkies", "website_url": "https://pinogy.example/breeders/marie"},
        {"business_name": "Old Site", "website_url": "http://www.oldsite.example"},
        {"business_name": "Own Site", "website_url": "https://www.own.example"},
    ]
    await run(manage_csv, {"operation": "write", "data": rows})
    result = await analyze_website(analyze_website.params_model(), run.ctx())
    assert isinstance(result, CapabilityOutput)
    assert result.confidence is not None
    out = result.output
    assert out["analyzed"] == 5
    assert out["qualified"] == 3
    assert out["file"] == "PROSPECTS_QUALIFIED.csv"
    assert out["by_kind"] == {"none": 1, "social": 1, "listing": 1, "own": 2}
    with (run.out / "PROSPECTS_QUALIFIED.csv").open(newline="") as fh:
        scored = {r["business_name"]: r["priority"] for r in csv.DictReader(fh)}
    assert scored == {"Bittersweet Farm": "5", "Alpaca Kids": "5", "Marie's Yorkies": "4"}
    with pytest.raises(PermanentError, match="build it first"):
        await run(analyze_website, {"csv_file": "missing.csv"})


# ------------------------------------------------------------------------------------------ calendar
def _unfold(text: str) -> list[str]:
    assert "\n" not in text.replace("\r\n", ""), "every line ends with CRLF"
    return text.replace("\r\n ", "").split("\r\n")[:-1]


async def test_calendar_invite_is_valid_icalendar_in_utc(run: Run) -> None:
    params = {
        "contact": "Carol Campion <carol@bittersweet.example>",
        "date": "2026-02-13",
        "time": "14:00",
        "timezone": "America/New_York",
        "duration_min": 45,
        "agenda": "Discovery call; breeding records, waiting list, puppy milestones\nSecond line, with comma",
    }
    out = await run(schedule_calendar_event, params)
    assert out["start_utc"] == "2026-02-13T19:00:00+00:00"
    assert out["end_utc"] == "2026-02-13T19:45:00+00:00"
    raw = (run.out / out["file"]).read_bytes().decode()
    assert all(len(line.encode()) <= 75 for line in raw.split("\r\n"))
    lines = _unfold(raw)
    assert lines[0] == "BEGIN:VCALENDAR"
    assert lines[-1] == "END:VCALENDAR"
    props = dict(line.split(":", 1) for line in lines if not line.startswith("ATTENDEE"))
    assert props["VERSION"] == "2.0"
    assert props["DTSTART"] == "20260213T190000Z"
    assert props["DTEND"] == "20260213T194500Z"
    assert props["UID"] == out["uid"]
    assert props["DTSTAMP"].endswith("Z")
    assert props["DESCRIPTION"].startswith("Discovery call\\; breeding records\\,")
    assert "\\n" in props["DESCRIPTION"]
    assert any(
        line.startswith('ATTENDEE;CN="Carol Campion"') and line.endswith(":mailto:carol@bittersweet.example")
        for line in lines
    )
    assert lines.count("BEGIN:VEVENT") == lines.count("END:VEVENT") == 1
    with pytest.raises(ValidationError):
        ScheduleCalendarEventParams.model_validate({**params, "timezone": "Mars/Olympus"})


def test_fold_keeps_utf8_characters_whole() -> None:
    line = "SUMMARY:" + "é" * 80
    folded = fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line


# ------------------------------------------------------------------------------------------ documents
async def test_draft_document_fills_a_builtin_template(run: Run) -> None:
    variables = {"client": "Carol Campion", "requirements": ["Breeding records", "Customer database"]}
    out = await run(draft_document, {"template": "proposal", "variables": variables})
    text = (run.out / out["file"]).read_text()
    assert out["file"].endswith(".md")
    assert text.startswith("# Proposal for Carol Campion")
    assert "- Breeding records\n- Customer database" in text
    assert "timeline" in out["missing_variables"]
    assert "client" not in out["missing_variables"]


async def test_draft_document_html_and_custom_text(run: Run) -> None:
    out = await run(
        draft_document,
        {"template": "# Hi {name}\n\n- **one** & two", "variables": {"name": "<Marie>"}, "output_format": "html"},
    )
    page = (run.out / out["file"]).read_text()
    assert "<h1>Hi &lt;Marie&gt;</h1>" in page
    assert "<li><strong>one</strong> &amp; two</li>" in page
    assert out["missing_variables"] == []


async def test_wireframes_are_valid_svg(run: Run) -> None:
    out = await run(create_wireframes, {"description": "Breeder manager <CT> & co", "format": "html"})
    assert out["pages"] == 5
    assert len(out["files"]) == 6
    for name in out["files"][:5]:
        root = ET.parse(run.out / name).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.find("{http://www.w3.org/2000/svg}title") is not None
    assert (run.out / out["files"][5]).read_text().count("<img ") == 5
    assert [p for p, _ in run.progress] == [20.0, 40.0, 60.0, 80.0, 100.0]
    with pytest.raises(ValidationError):
        CreateWireframesParams(description="x", pages=[])


async def test_build_quote_totals_and_in_kind_payment(run: Run) -> None:
    params = {
        "client": "Carol Campion",
        "features": ["Breeding records", {"name": "Customer DB", "hours": 12.5}],
        "rate_structure": {
            "hourly_rate": 80,
            "discount_pct": 10,
            "support_months": 3,
            "support_monthly": 100,
            "in_kind": [{"item": "puppy", "unit_value": 3000}],
        },
    }
    out = await run(build_quote, params)
    # (8 + 12.5) h x 80 = 1640; -10 % = 1476; + 3 x 100 support = 1776
    assert out["total"] == 1776.0
    assert out["hours"] == 20.5
    assert out["in_kind"] == {"puppy": 1}
    text = (run.out / out["file"]).read_text()
    assert "**Total: 1776.00 USD**" in text
    assert "1 x puppy" in text
    as_csv = await run(build_quote, {**params, "output_format": "csv"})
    with (run.out / as_csv["file"]).open(newline="") as fh:
        assert list(csv.DictReader(fh))[-1] == {"feature": "TOTAL", "hours": "20.5", "amount": "1776.00"}
    with pytest.raises(ValidationError):
        BuildQuoteParams(features=[])


def test_params_models_have_json_schemas() -> None:
    for model in (DraftDocumentParams, SearchGoogleMapsParams, ScheduleCalendarEventParams):
        assert model.model_json_schema()["type"] == "object"
    parsed = ScheduleCalendarEventParams.model_validate({"contact": "x", "date": "2026-02-13", "time": "09:00"})
    assert parsed.date == dt.date(2026, 2, 13)
