"""The rules of the rule-based decomposer: what kind of work a task's title names, per action, and weights.

A title names its kind of work with a leading verb and an object: "Draft the lease", "Schedule the
review meeting", "Find a venue". Each :class:`Template` says which leading verbs make a title that
action's work whatever follows (``any_object``), which make it that work when the object fits
(``verbs`` and ``pattern``), and how sure that guess is. Only the title decides: a description names
everything around the work (suppliers, meetings, data), not the work itself, and roles say who does it,
not what. ``HANDS_ON`` wording and roles lower the confidence, desk roles raise it a little.
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
    """The titles that name an action's work, with the base confidence of that guess.

    Attributes:
        action: The capability.
        pattern: The object of the work, searched in the title.
        confidence: The base confidence of a match.
        step: How the agent step is described.
        roles: Roles that fit the action (they adjust the confidence; alone they propose nothing).
        verbs: Leading verbs under which ``pattern`` counts; None: any title.
        any_object: Leading verbs that make the title this action's work whatever follows.
    """

    action: str
    pattern: re.Pattern[str]
    confidence: float
    step: str
    roles: re.Pattern[str] | None = None
    verbs: re.Pattern[str] | None = None
    any_object: re.Pattern[str] | None = None


def _rx(words: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{words})\b", re.IGNORECASE)


def _verbs(words: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{words})", re.IGNORECASE)


WRITING = (
    r"develop|create|draft|write|prepare|produce|finali[sz]e|establish|formulate|compile|revise|edit|update|publish|"
    r"format|summari[sz]e|rewrite"
)
DOCUMENTS = (
    r"plans?|polic(?:y|ies)|protocols?|procedures?|process(?:es)?|reports?|proposals?|frameworks?|charter|"
    r"specifications?|requirements|criteria|manuals?|guidelines?|strateg(?:y|ies)|agreements?|contracts?|"
    r"applications?|briefs?|checklists?|materials|curricul(?:um|a)|documentation|documents?|manuscripts?|drafts?|"
    r"architecture|scenarios|options|workflows?|responsibilities|sops?|templates?|terms|glossary|waivers?|"
    r"content|schedules?|forms|letters?|minutes|faqs?|scripts?|summar(?:y|ies)|descriptions?"
)

TEMPLATES: tuple[Template, ...] = (
    Template(
        "create_wireframes",
        _rx(
            r"wireframes?|mock-?ups?|ui|ux|user interfaces?|dashboards?|screens?|mobile apps?|apps?|websites?|"
            r"web pages?|portals?|digital|visuali[sz]ations?"
        ),
        0.65,
        "Sketch the screens",
        _rx(r"designers?|ux|ui|software architects?|front-?end developers?"),
        verbs=_verbs(r"design|develop|create|sketch|prototype|mock"),
    ),
    Template(
        "analyze_website",
        _rx(r"websites?|online presence|seo|landing pages?|web shops?"),
        0.6,
        "Review the relevant websites",
        _rx(r"web developers?|seo|digital marketing\w*"),
        verbs=_verbs(r"analy[sz]e|review|assess|audit|evaluate|check|score"),
    ),
    Template(
        "search_google_maps",
        _rx(
            r"local|nearby|venues?|office space|space|premises|locations?|suppliers?|vendors?|contractors?|"
            r"partners?|partnerships?|stores?|shops?|facilit(?:y|ies)"
        ),
        0.55,
        "Find candidates on the map",
        _rx(r"logistics|supply chain|procurement|real estate|sourcing"),
        verbs=_verbs(r"find|locate|source|secure|engage|identify|select|shortlist|scout|search|research|map"),
    ),
    Template(
        "web_scrape",
        _rx(r"research\w*|literature|markets?|benchmarks?|regulations?|best practices?|documentation|options"),
        0.6,
        "Collect the facts from the web",
        _rx(r"researchers?|analysts?|economists?|scientists?|investigators?"),
        verbs=_verbs(r"research|study|review|survey|collect|gather|compare|investigate|benchmark|scan"),
        any_object=_verbs(r"research|survey|benchmark"),
    ),
    Template(
        "build_quote",
        _rx(
            r"budgets?(?! approval)|quotes?|quotations?|pricing|price lists?|cost estimates?|costings?|"
            r"funding proposals?|grant proposals?|fee schedules?"
        ),
        0.55,
        "Price it",
        _rx(r"financial|finance|accountants?|procurement|cost estimators?|budget"),
        verbs=_verbs(rf"{WRITING}|estimate|price|cost"),
    ),
    Template(
        "manage_csv",
        _rx(
            r"lists?|registers?|rosters?|spreadsheets?|csv|tables?|trackers?|tracking (?:sheets?|systems?|logs?)|"
            r"inventor(?:y|ies)|databases?|logs?|schedules?"
        ),
        0.5,
        "Keep the data in a table",
        _rx(r"data|m&e|statistic\w*|database|records"),
        verbs=_verbs(r"create|compile|build|establish|set|develop|keep|maintain|update|prepare|list"),
    ),
    Template(
        "draft_document",
        _rx(DOCUMENTS),
        0.6,
        "Draft the document",
        _rx(r"writers?|legal|lawyers?|counsel|policy|communications?|editors?|compliance"),
        verbs=_verbs(WRITING),
        any_object=_verbs(r"draft|write|document|outline|define|design|revise|edit|co-\w+"),
    ),
    Template(
        "schedule_calendar_event",
        _rx(
            r"meetings?|workshops?|kick-?offs?|sessions?|appointments?|events?|webinars?|interviews?|"
            r"consultations?|hearings?|visits?"
        ),
        0.55,
        "Put the meeting in the calendar",
        _rx(r"coordinators?|facilitators?|liaison|secretar\w*|assistants?"),
        verbs=_verbs(r"organi[sz]e|hold|host|conduct|plan|arrange|set|book|run|convene|attend"),
        any_object=_verbs(r"schedule|facilitate|consult|co-\w+"),
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


def leading_verbs(title: str) -> list[str]:
    """The verbs a title leads with.

    Its first word, the word after ``and`` ("Review and revise ..."), and each without a ``co-`` prefix
    ("Co-Develop" gives "co-develop" and "develop").
    """
    words = re.findall(r"[a-z][a-z'-]*", title.lower())
    verbs = words[:1] + (words[2:3] if len(words) > 2 and words[1] == "and" else [])
    return verbs + [v[3:] for v in verbs if v.startswith("co-")]


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
MAX_AGENT_STEPS = 2
