"""``draft_document``: fill a template with variables and write markdown, HTML or plain text."""

from __future__ import annotations

import html
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import inside, rel, slug, write_text

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

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


FORMATS = {"markdown": "markdown", "md": "markdown", "html": "html", "htm": "html", "text": "text", "txt": "text"}
FORMATS.update({"plain": "text", "plain_text": "text", "plaintext": "text"})
_EXTENSION = re.compile(r"\.(md|markdown|txt|html?)$", re.IGNORECASE)


def template_name(template: str) -> str | None:
    """The template's name when ``template`` names one (``"Meeting agenda"``, ``interview_notes.md``), else None.

    A name is one line without ``{placeholders}``; text with either is template text.
    """
    line = template.strip()
    if not line or "\n" in line or "{" in line or len(line) > 100 or line.startswith("#"):
        return None
    return re.sub(r"[^a-z0-9]+", "_", _EXTENSION.sub("", line).lower()).strip("_") or None


class DraftDocumentParams(BaseModel):
    """Parameters of ``draft_document``.

    ``template`` is a built-in template, any other name (a document of that kind, titled from the name,
    with a section per variable), or template text with ``{placeholders}``.
    """

    template: str = Field(
        min_length=1,
        description=(
            f"A built-in template ({', '.join(TEMPLATES)}; 'interview_notes.md' names it too), any other document "
            "name (a document of that kind, titled from the name and filled from the variables, a section each), "
            "or template text with {placeholders}."
        ),
        examples=["proposal", "Meeting agenda", "# Notes for {client}\n\n{summary}\n"],
    )
    variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Values of the placeholders (or sections). A string is {'content': string}; a list is "
        "{'items': list}.",
    )
    output_format: Literal["markdown", "html", "text"] = Field(
        default="markdown", description="markdown (md), html (htm) or text (txt, plain); any case."
    )
    file_name: str | None = Field(default=None, description="File under documents/; default from the template name.")

    @field_validator("variables", mode="before", json_schema_input_type=dict[str, Any] | str | list[Any] | None)
    @classmethod
    def _variables(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):
            return {"content": value}
        return {"items": value} if isinstance(value, list) else value

    @field_validator("output_format", mode="before", json_schema_input_type=str)
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str):
            key = value.strip().lower().lstrip(".").replace(" ", "_").replace("-", "_")
            return FORMATS.get(key, value)
        return value


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


def compose(template: str, variables: dict[str, Any]) -> tuple[str, str, list[str]]:
    """The document's kind, its markdown and the placeholders left unfilled.

    A built-in template or template text is filled from ``variables``; any other name gives a document of
    that kind, titled from the name, with a section per variable.
    """
    name = template_name(template)
    if name is None:
        return ("document", *render(template, variables))
    if name in TEMPLATES:
        return (name, *render(TEMPLATES[name], variables))
    return name, named_document(template.strip(), variables), []


def named_document(name: str, variables: dict[str, Any]) -> str:
    """A document of the kind ``name`` says: titled from it, a section per variable."""
    title = _EXTENSION.sub("", name).replace("_", " ").strip()
    lines = [f"# {title[:1].upper() + title[1:]}", ""]
    for key, value in variables.items():
        lines += [f"## {str(key).replace('_', ' ').strip().capitalize()}", "", _value(value), ""]
    if not variables:
        lines += ["(No content was given for this document.)", ""]
    return "\n".join(lines)


@capability("draft_document")
async def draft_document(params: DraftDocumentParams, ctx: TaskContext) -> dict[str, Any]:
    """Fill a document template with variables and write it as markdown, HTML or text under documents/."""
    name, markdown, missing = compose(params.template, params.variables)
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
