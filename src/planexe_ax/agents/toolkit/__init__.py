"""The built-in prospecting toolkit: every action of the seed's agent registry, working in the output folder.

``search_google_maps`` and ``make_phone_call`` are deterministic simulators and say so in their output
(``"simulator": true``); the other actions do real, local work.
"""

from pydantic import BaseModel

from planexe_ax.agents.toolkit.analysis import AnalyzeWebsiteParams, analyze_website
from planexe_ax.agents.toolkit.calendar_invite import ScheduleCalendarEventParams, schedule_calendar_event
from planexe_ax.agents.toolkit.csvdata import ManageCsvParams, manage_csv
from planexe_ax.agents.toolkit.documents import DraftDocumentParams, draft_document
from planexe_ax.agents.toolkit.mail import SendEmailParams, send_email
from planexe_ax.agents.toolkit.maps import SearchGoogleMapsParams, search_google_maps
from planexe_ax.agents.toolkit.phone import MakePhoneCallParams, make_phone_call
from planexe_ax.agents.toolkit.quote import BuildQuoteParams, build_quote
from planexe_ax.agents.toolkit.web import WebScrapeParams, web_scrape
from planexe_ax.agents.toolkit.wireframes import CreateWireframesParams, create_wireframes

ALL_CAPABILITIES = (
    search_google_maps,
    web_scrape,
    send_email,
    make_phone_call,
    schedule_calendar_event,
    analyze_website,
    draft_document,
    create_wireframes,
    build_quote,
    manage_csv,
)


def params_models() -> dict[str, type[BaseModel]]:
    """The params model of every built-in action, for checking plans before they run."""
    return {cap.action: cap.params_model for cap in ALL_CAPABILITIES}


__all__ = [
    "ALL_CAPABILITIES",
    "AnalyzeWebsiteParams",
    "BuildQuoteParams",
    "CreateWireframesParams",
    "DraftDocumentParams",
    "MakePhoneCallParams",
    "ManageCsvParams",
    "ScheduleCalendarEventParams",
    "SearchGoogleMapsParams",
    "SendEmailParams",
    "WebScrapeParams",
    "analyze_website",
    "build_quote",
    "create_wireframes",
    "draft_document",
    "make_phone_call",
    "manage_csv",
    "params_models",
    "schedule_calendar_event",
    "search_google_maps",
    "send_email",
    "web_scrape",
]
