"""The rules of the rule-based decomposer: wording and role templates per action, and their weights.

Each :class:`Template` says which wording (and which roles) suggest an action and how sure that
guess is; ``HANDS_ON`` wording and roles lower the confidence, desk roles raise it a little.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HUMAN_ACTION = "human_task"
DEFAULT_THRESHOLD = 0.5
DEFAULT_CAPABILITIES: frozenset[str] = frozenset(
    {
        "search_google_maps",
        "web_scrape",
        "send_email",
        "make_phone_call",
        "schedule_calendar_event",
        "analyze_website",
        "draft_document",
        "create_wireframes",
        "build_quote",
        "manage_csv",
    }
)


@dataclass(frozen=True)
class Template:
    """Wording (and roles) that suggest an action, with the base confidence of that guess."""

    action: str
    pattern: re.Pattern[str]
    confidence: float
    step: str
    roles: re.Pattern[str] | None = None


def _rx(words: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{words})\b", re.IGNORECASE)


TEMPLATES: tuple[Template, ...] = (
    Template(
        "create_wireframes",
        _rx(r"wireframes?|mock-?ups?|ui|ux|user interface|dashboards?|mobile app|web design|screens?"),
        0.65,
        "Sketch the screens",
        _rx(r"designers?|ux|ui|software architects?|front-?end developers?"),
    ),
    Template(
        "analyze_website",
        _rx(r"websites?|online presence|seo|social media|landing page|e-?commerce|online"),
        0.6,
        "Review the relevant websites",
        _rx(r"web developers?|seo|digital marketing\w*"),
    ),
    Template(
        "search_google_maps",
        _rx(
            r"local|nearby|venues?|sites?|locations?|premises|suppliers?|vendors?|"
            r"contractors?|facilit(?:y|ies)|space|landlords?|partners?"
        ),
        0.55,
        "Find candidates on the map",
        _rx(r"logistics|supply chain|procurement|real estate|sourcing"),
    ),
    Template(
        "web_scrape",
        _rx(
            r"research\w*|identify\w*|investigat\w*|survey\w*|benchmark\w*|markets?|literature|"
            r"evaluat\w*|assess\w*|analy[sz]\w*|stud(?:y|ies)|explor\w*|options|compar\w*|"
            r"regulations?|requirements?|best practices?"
        ),
        0.6,
        "Collect the facts from the web",
        _rx(r"researchers?|analysts?|economists?|scientists?|investigators?"),
    ),
    Template(
        "build_quote",
        _rx(
            r"quotes?|quotations?|budget\w*|costs?|pricing|prices?|financ\w*|funding|bids?|"
            r"tenders?|invoices?|fees?"
        ),
        0.55,
        "Price it",
        _rx(r"financial|finance|accountants?|procurement|cost estimators?|budget"),
    ),
    Template(
        "manage_csv",
        _rx(
            r"lists?|database|inventory|spreadsheets?|csv|registers?|tracking|track|datasets?|"
            r"data|logs?|catalog\w*|records?|schedules?|metrics|kpis?"
        ),
        0.5,
        "Keep the data in a table",
        _rx(r"data|m&e|statistic\w*|database|records"),
    ),
    Template(
        "draft_document",
        _rx(
            r"documents?|documentation|draft\w*|write|writing|reports?|plans?|polic(?:y|ies)|"
            r"proposals?|charter|specifications?|procedures?|manuals?|guidelines?|strateg\w*|"
            r"protocols?|framework|criteria|agreements?|contracts?|applications?|briefs?|"
            r"define|defin\w*|outline|checklists?|materials?|curriculum|content|sops?"
        ),
        0.6,
        "Draft the document",
        _rx(r"writers?|legal|lawyers?|counsel|policy|communications?|editors?|compliance"),
    ),
    Template(
        "schedule_calendar_event",
        _rx(
            r"meetings?|workshops?|kick-?off|sessions?|appointments?|events?|"
            r"webinars?|interviews?|consultations?|hearings?"
        ),
        0.55,
        "Put the meeting in the calendar",
        _rx(r"coordinators?|facilitators?|liaison|secretar\w*|assistants?"),
    ),
    Template(
        "send_email",
        _rx(
            r"emails?|e-mail|outreach|notify|invit\w*|announc\w*|communicat\w*|newsletters?|"
            r"contact\w*|inform|engage\w*|stakeholders?|correspond\w*"
        ),
        0.55,
        "Write to the people concerned",
        _rx(r"stakeholder\w*|engagement|outreach|communications?|public relations|liaison"),
    ),
    Template(
        "make_phone_call",
        _rx(r"phone|telephone|calls?|follow[- ]up"),
        0.5,
        "Call the people concerned",
        _rx(r"call cent\w*|sales\w*|telemarket\w*"),
    ),
)

HANDS_ON = _rx(
    r"install\w*|construct\w*|renovat\w*|refurbish\w*|build(?:ing)? out|assembl\w*|hire|hiring|recruit\w*|"
    r"train(?:ing)?|procure\w*|purchas\w*|buy|acquir\w*|negotiat\w*|sign\w*|inspect\w*|commission\w*|calibrat\w*|"
    r"manufactur\w*|fabricat\w*|transport\w*|obtain\w*|permits?|approv\w*|secur\w*|"
    r"operat\w*|maintain\w*|maintenance|pilot\w*|deploy\w*|wiring|electrical|plumbing|clinical|patients?|"
    r"participants?|enrol\w*|treat\w*|exam\w*|fire|kiln|clay|equipment|machines?|hardware|physical|"
    r"execut\w*|repair\w*|replac\w*|payments?|pay|transfer\w*|test\w*|retest\w*|debug\w*|coding|"
    r"programm\w*|implement\w*|verif\w*|ship\w*"
)
DESK_ROLES = _rx(
    r"analyst|researcher|marketing|communications?|writer|coordinator|manager|developer|designer|"
    r"consultant|administrator|specialist|strategist|officer"
)
HANDS_ON_ROLES = _rx(
    r"technician|electrician|contractor|construction|installer|operator|potter|nurse|physician|"
    r"clinician|doctor|inspector|architect|mechanic|builder|plumber|instructor|legal|lawyer|"
    r"mechanical engineer|electrical engineer|facilit\w* manager"
)
TITLE_BONUS = 0.1
EXTRA_MATCH_BONUS = 0.05
DESK_ROLE_BONUS = 0.05
HANDS_ON_PENALTY = 0.2
HANDS_ON_ROLE_PENALTY = 0.1
ROLE_BONUS = 0.05
ROLE_ONLY_PENALTY = 0.15
MAX_AGENT_STEPS = 2
