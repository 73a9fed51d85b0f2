"""``create_wireframes``: one low-fidelity SVG wireframe per page, laid out by what the page is for."""

from __future__ import annotations

from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from pydantic import BaseModel, Field

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import rel, slug, write_text

WIDTH, HEIGHT, SIDEBAR, HEADER = 960, 640, 180, 56
DEFAULT_PAGES = ["Dashboard", "Records", "Customers", "Billing", "Reports"]


class CreateWireframesParams(BaseModel):
    """Parameters of ``create_wireframes``."""

    description: str = Field(min_length=1, description="What the application is, shown in every header.")
    pages: list[str] = Field(default_factory=lambda: list(DEFAULT_PAGES), min_length=1, max_length=12)
    tool: str = Field(
        default="svg", description="Requested tool; wireframes are always drawn by the local SVG renderer."
    )
    format: Literal["svg", "html"] = Field(
        default="svg", description="svg: one file per page; html: plus an index page."
    )


def _rect(x: int, y: int, w: int, h: int, fill: str = "#ffffff", stroke: str = "#9aa0a6") -> str:
    return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}" stroke="{stroke}" rx="4"/>'


def _text(x: int, y: int, text: str, size: int = 14, weight: str = "normal") -> str:
    return f'<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}">{escape(text)}</text>'


def _cards(x: int, y: int, w: int) -> list[str]:
    width = (w - 3 * 16) // 4
    out: list[str] = []
    for i, label in enumerate(("Total", "This month", "Pending", "Alerts")):
        cx = x + i * (width + 16)
        out += [
            _rect(cx, y, width, 80, "#f1f3f4"),
            _text(cx + 12, y + 28, label, 12),
            _text(cx + 12, y + 62, "123", 24),
        ]
    return out


def _chart(x: int, y: int, w: int, h: int) -> list[str]:
    out = [_rect(x, y, w, h), _text(x + 12, y + 24, "Trend", 12)]
    bars = 12
    step = (w - 24) // bars
    for i in range(bars):
        bh = 20 + (i * 37 % (h - 60))
        out.append(
            f'<rect x="{x + 12 + i * step}" y="{y + h - 12 - bh}" width="{step - 6}" height="{bh}" fill="#c8ccd0"/>'
        )
    return out


def _table(x: int, y: int, w: int, rows: int = 8) -> list[str]:
    out = [_rect(x, y, w, 36, "#e8eaed"), _text(x + 12, y + 23, "Name     Status     Updated     Actions", 12)]
    out += [_rect(x, y + 36 + i * 32, w, 32) for i in range(rows)]
    return out


def _form(x: int, y: int, w: int) -> list[str]:
    out: list[str] = []
    for i, label in enumerate(("Customer", "Item", "Amount", "Due date")):
        out += [_text(x, y + 18 + i * 64, label, 12), _rect(x, y + 26 + i * 64, w // 2, 30)]
    out += [_rect(x, y + 4 * 64 + 20, 120, 36, "#5f6368"), _text(x + 36, y + 4 * 64 + 43, "Save", 14, "bold")]
    return out


def _body(page: str) -> list[str]:
    x, y, w = SIDEBAR + 24, HEADER + 56, WIDTH - SIDEBAR - 48
    key = page.lower()
    if "dashboard" in key or "overview" in key:
        return [*_cards(x, y, w), *_chart(x, y + 100, w, HEIGHT - y - 124)]
    if "report" in key or "analytic" in key:
        return [*_chart(x, y, w, 220), *_table(x, y + 240, w, 6)]
    if any(word in key for word in ("billing", "invoice", "payment", "checkout", "settings")):
        return _form(x, y, w)
    return [_rect(x, y, 260, 32), _text(x + 10, y + 21, "Search...", 12), *_table(x, y + 48, w)]


def render_page(description: str, pages: list[str], current: str) -> str:
    """One wireframe as an SVG document."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" fill="#202124">',
        f"<title>{escape(f'{current} - {description}')}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fafafa"/>',
        _rect(0, 0, WIDTH, HEADER, "#dadce0"),
        _text(16, 35, description[:80], 16, "bold"),
        _rect(0, HEADER, SIDEBAR, HEIGHT - HEADER, "#f1f3f4"),
    ]
    for i, page in enumerate(pages):
        if page == current:
            parts.append(_rect(8, HEADER + 16 + i * 40, SIDEBAR - 16, 32, "#c8ccd0"))
        parts.append(_text(20, HEADER + 37 + i * 40, page, 14, "bold" if page == current else "normal"))
    parts += [_text(SIDEBAR + 24, HEADER + 36, current, 22, "bold"), *_body(current), "</svg>"]
    return "\n".join(parts) + "\n"


def _index(description: str, files: list[str]) -> str:
    images = "\n".join(f"<figure><img src={quoteattr(name)} alt={quoteattr(name)}></figure>" for name in files)
    head = f'<meta charset="utf-8"><title>{escape(description)}</title>'
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n{images}\n</body></html>\n"


@capability("create_wireframes")
async def create_wireframes(params: CreateWireframesParams, ctx: TaskContext) -> dict[str, Any]:
    """Draw one SVG wireframe per page (dashboard, records, billing, ...) under wireframes/."""
    folder = ctx.output_dir / "wireframes"
    files = []
    for i, page in enumerate(params.pages, start=1):
        path = write_text(folder / f"{i:02d}-{slug(page, 32)}.svg", render_page(params.description, params.pages, page))
        files.append(path)
        await ctx.progress(100 * i / len(params.pages), f"wireframe {page}")
    if params.format == "html":
        files.append(write_text(folder / "index.html", _index(params.description, [p.name for p in files])))
    return {
        "files": [rel(ctx.output_dir, p) for p in files],
        "pages": len(params.pages),
        "format": params.format,
        "renderer": "local svg",
        "requested_tool": params.tool,
    }
