"""``draft_document``: fill a template with variables and write markdown, HTML or plain text."""

from __future__ import annotations

import html
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import inside, rel, slug, write_text
from planexe_ax.errors import PermanentError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[a-z0-9_-]+$")

TEMPLATES: dict[str, str] = {
    "proposal": (
        "# Proposal for {client}\n\n## Cover letter\n\n{cover_letter}\n\n## What you need\n\n{requirements}\n\n"
        "## Wireframes\n\n{wireframes}\n\n## Timeline\n\n{timeline}\n\n## Pricing\n\n{pricing}\n\n## Terms\n\n{terms}\n"
    ),
    "follow_up_email": (
        "# Following up, {contact_name}\n\nHi {contact_name},\n\nThanks for talking with me about {pain_point}. "
        "{pitch}\n\nWould {proposed_time} work for a short discovery call?\n\nBest,\n{sender}\n"
    ),
    "interview_notes": (
        "# Discovery interview: {contact_name}\n\nDate: {date}\n\n## Current workflow\n\n{workflow}\n\n"
        "## Core needs\n\n{needs}\n\n## Budget and payment\n\n{budget}\n\n## Next steps\n\n{next_steps}\n"
    ),
    "pricing": "# Pricing for {client}\n\n## Deliverables\n\n{deliverables}\n\n## Payment\n\n{payment}\n",
}


class DraftDocumentParams(BaseModel):
    """Parameters of ``draft_document``."""

    template: str = Field(
        description=f"A built-in template ({', '.join(TEMPLATES)}) or template text with {{placeholders}}."
    )
    variables: dict[str, Any] = Field(default_factory=dict, description="Values of the placeholders.")
    output_format: Literal["markdown", "html", "text"] = "markdown"
    file_name: str | None = Field(default=None, description="File under documents/; default from the template name.")


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(f"- {_value(v)}" for v in value)
    if isinstance(value, dict):
        return "\n".join(f"- **{k}**: {_value(v)}" for k, v in value.items())
    return str(value)


def render(template: str, variables: dict[str, Any]) -> tuple[str, list[str]]:
    """Fill ``{name}`` placeholders; unknown ones stay as they are and are returned as missing."""
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return _value(variables[name])
        missing.append(name)
        return match.group(0)

    return _PLACEHOLDER.sub(fill, template), sorted(set(missing))


def to_html(markdown: str, title: str) -> str:
    """A small markdown subset (headings, bullet lists, bold, paragraphs) as a standalone HTML page."""
    body: list[str] = []
    in_list = False
    for block in markdown.split("\n"):
        line = html.escape(block.strip())
        line = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", line)
        if in_list and not line.startswith("- "):
            body.append("</ul>")
            in_list = False
        if heading := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(heading.group(1))
            body.append(f"<h{level}>{heading.group(2)}</h{level}>")
        elif line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{line[2:]}</li>")
        elif line:
            body.append(f"<p>{line}</p>")
    if in_list:
        body.append("</ul>")
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title>'
    return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n" + "\n".join(body) + "\n</body></html>\n"


def to_text(markdown: str) -> str:
    """Markdown with the heading and emphasis marks removed."""
    return re.sub(r"^#{1,6} ", "", markdown.replace("**", ""), flags=re.MULTILINE)


def _template_text(template: str) -> tuple[str, str]:
    if template in TEMPLATES:
        return template, TEMPLATES[template]
    if _NAME.match(template):
        raise PermanentError(f"unknown template {template!r}; use one of {sorted(TEMPLATES)} or give template text")
    return "document", template


@capability("draft_document")
async def draft_document(params: DraftDocumentParams, ctx: TaskContext) -> dict[str, Any]:
    """Fill a document template with variables and write it as markdown, HTML or text under documents/."""
    name, template = _template_text(params.template)
    markdown, missing = render(template, params.variables)
    title = next((ln.lstrip("# ").strip() for ln in markdown.splitlines() if ln.strip()), name)
    suffix, text = {
        "markdown": (".md", markdown),
        "html": (".html", to_html(markdown, title)),
        "text": (".txt", to_text(markdown)),
    }[params.output_format]
    stem = params.file_name or f"{slug(name)}-{ctx.subtask_id}"
    path = write_text(inside(ctx.output_dir / "documents", stem if stem.endswith(suffix) else stem + suffix), text)
    await ctx.progress(100, f"drafted {path.name}")
    return {
        "file": rel(ctx.output_dir, path),
        "format": params.output_format,
        "title": title[:200],
        "words": len(markdown.split()),
        "missing_variables": missing,
    }
