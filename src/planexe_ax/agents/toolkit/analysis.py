"""``analyze_website``: score a prospect's web presence.

With a ``url`` the page is fetched and scored on a rubric of signals (https, mobile viewport, meta
description, contact form, own domain, no site-builder platform). Without one, every row of a
prospects CSV in the output folder is scored from its ``website_url`` alone, deterministically:
no website or a social page only are the easiest wins (priority 5), a third-party listing next (4),
a plain-http own site (3), an own https site last (2).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import CapabilityOutput, TaskContext, capability
from planexe_ax.agents.toolkit._files import csv_text, inside, read_csv, rel, write_text
from planexe_ax.agents.toolkit.web import PageReader, fetch_page, read_html
from planexe_ax.errors import PermanentError

DEFAULT_RUBRIC: dict[str, float] = {
    "https": 1.0,
    "mobile_viewport": 1.0,
    "meta_description": 1.0,
    "contact_form": 1.5,
    "own_domain": 1.0,
    "no_site_builder": 0.5,
}
SOCIAL = ("facebook", "instagram", "twitter", "x", "tiktok", "youtube")
LISTINGS = ("pinogy", "puppyfind", "akc-marketplace", "marketplace", "yelp", "etsy")
BUILDERS = ("wix", "squarespace", "weebly", "godaddysites", "shopify", "wordpress")
SIGNAL_WORDS: dict[str, tuple[str, ...]] = {
    "https": ("https", "ssl", "tls", "secure", "security", "certificate"),
    "mobile_viewport": ("mobile", "mobile_friendly", "responsive", "viewport", "mobile_viewport", "mobile_ready"),
    "meta_description": ("meta", "meta_description", "description", "seo", "search_engine_optimization"),
    "contact_form": ("contact", "contact_form", "form", "forms", "lead_form", "call_to_action", "cta"),
    "own_domain": ("domain", "own_domain", "custom_domain", "website", "own_website"),
    "no_site_builder": ("no_site_builder", "custom_built", "custom_site", "no_builder", "not_a_template"),
}
_SIGNAL_OF = {word: signal for signal, words in SIGNAL_WORDS.items() for word in words}


def signal_name(criterion: str) -> str:
    """The rubric signal a criterion names (``"Mobile friendly"`` -> ``mobile_viewport``), else the criterion."""
    key = "_".join(re.findall(r"[a-z0-9]+", criterion.lower()))
    return _SIGNAL_OF.get(key, key)


def read_rubric(value: Any) -> Any:
    """A rubric as signal -> weight from a mapping, a list of criteria or a comma-separated string."""
    if isinstance(value, str):
        value = [part for part in re.split(r"[,;\n]|\band\b", value) if part.strip()]
    if isinstance(value, list | tuple):
        value = {str(item): 1.0 for item in value}
    if isinstance(value, dict):
        return {signal_name(str(key)): weight for key, weight in value.items()}
    return value


class AnalyzeWebsiteParams(BaseModel):
    """Parameters of ``analyze_website``: a URL to fetch, or a prospects CSV to score."""

    url: str | None = Field(default=None, description="Page to fetch and score; unset: score the CSV rows.")
    scoring_rubric: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RUBRIC),
        description=(
            "For the fetched page: signal -> weight, a list of criteria (weight 1 each) or a comma-separated "
            f"string of them. Signals: {', '.join(DEFAULT_RUBRIC)}; everyday words name them too (mobile, "
            "responsive, ssl, seo, contact form, custom domain...). Criteria that name no signal are reported "
            "as unscored; with none that does, the default rubric scores."
        ),
        examples=[DEFAULT_RUBRIC, ["https", "mobile", "contact form"], "mobile friendly, SSL, contact form, design"],
    )
    csv_file: str = Field(default="PROSPECTS.csv", description="Prospects CSV in the output folder.")
    output_file: str = Field(default="PROSPECTS_QUALIFIED.csv", description="Scored rows at or above min_priority.")
    min_priority: int = Field(default=4, ge=1, le=5, description="Lowest priority kept in output_file.")

    @field_validator("scoring_rubric", mode="before", json_schema_input_type=dict[str, float] | list[str] | str)
    @classmethod
    def _criteria(cls, value: Any) -> Any:
        return read_rubric(value)


def site_kind(url: str) -> str:
    """Classify a website address: none, social, listing, builder or own."""
    if not url.strip():
        return "none"
    host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").removeprefix("www.")
    labels = host.split(".")
    if any(label in SOCIAL for label in labels):
        return "social"
    if any(label in LISTINGS for label in labels):
        return "listing"
    if any(label in BUILDERS for label in labels):
        return "builder"
    return "own"


def score_row(row: dict[str, str]) -> dict[str, str]:
    """Score one prospect from its ``website_url``; returns the added columns."""
    url = row.get("website_url", "") or ""
    kind = site_kind(url)
    priority, quality, reason = {
        "none": (5, 0, "no website: easiest win"),
        "social": (5, 1, "social page only"),
        "listing": (4, 2, "third-party listing only"),
        "builder": (3, 3, "site builder page"),
        "own": (2, 4, "own website"),
    }[kind]
    if kind == "own" and url.startswith("http://"):
        priority, quality, reason = 3, 3, "own website without https"
    return {"website_kind": kind, "quality": str(quality), "priority": str(priority), "reason": reason}


def page_signals(url: str, reader: PageReader) -> dict[str, bool]:
    """The rubric signals of a fetched page."""
    kind = site_kind(url)
    platform_hints = " ".join([*reader.scripts, reader.meta.get("generator", "")]).lower()
    return {
        "https": url.startswith("https://"),
        "mobile_viewport": "viewport" in reader.meta,
        "meta_description": bool(reader.meta.get("description")),
        "contact_form": reader.forms > 0 and reader.contact_fields > 0,
        "own_domain": kind in ("own", "builder"),
        "no_site_builder": kind != "builder" and not any(b in platform_hints for b in BUILDERS),
    }


def rubric_score(signals: dict[str, bool], rubric: dict[str, float]) -> tuple[int, float]:
    """Quality 1..5 and the weighted fraction of the rubric's signals met (criteria that are no signal left out).

    Raises:
        PermanentError: When the weights of the rubric's signals do not add up to something positive.
    """
    scored = {key: w for key, w in rubric.items() if key in signals} or dict(DEFAULT_RUBRIC)
    total = sum(w for w in scored.values() if w > 0)
    if total <= 0:
        raise PermanentError("scoring_rubric needs at least one positive weight")
    met = sum(w for key, w in scored.items() if w > 0 and signals.get(key, False))
    fraction = met / total
    return 1 + round(4 * fraction), fraction


async def _analyze_url(params: AnalyzeWebsiteParams, ctx: TaskContext, url: str) -> CapabilityOutput:
    page = await fetch_page(url, ctx.settings.fetch_allow)
    await ctx.progress(50, f"fetched {page.url}")
    reader = read_html(page.text)
    signals = page_signals(page.url, reader)
    quality, fraction = rubric_score(signals, params.scoring_rubric)
    output = {
        "url": page.url,
        "status": page.status,
        "title": reader.title[:200],
        "website_kind": site_kind(page.url),
        "signals": signals,
        "quality": quality,
        "priority": 6 - quality,
        "score": round(fraction, 3),
        "unscored": sorted(set(params.scoring_rubric) - set(signals)),
    }
    return CapabilityOutput(output, confidence=0.8)


async def _analyze_csv(params: AnalyzeWebsiteParams, ctx: TaskContext) -> CapabilityOutput:
    source = inside(ctx.output_dir, params.csv_file)
    if not source.exists():
        raise PermanentError(f"{params.csv_file} is not in the output folder; build it first with manage_csv")
    fieldnames, raw = read_csv(source)
    rows = [{**row, **score_row(row)} for row in raw]
    columns = list(dict.fromkeys([*fieldnames, "website_kind", "quality", "priority", "reason"]))
    kept = sorted((r for r in rows if int(r["priority"]) >= params.min_priority), key=lambda r: -int(r["priority"]))
    target = inside(ctx.output_dir, params.output_file)
    write_text(target, csv_text(columns, kept), newline="")
    await ctx.progress(100, f"scored {len(rows)} prospects, {len(kept)} at priority {params.min_priority}+")
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row["website_kind"]] = by_kind.get(row["website_kind"], 0) + 1
    top = [r.get("business_name") or r.get("contact_name") or "" for r in kept[:5]]
    output = {"analyzed": len(rows), "qualified": len(kept), "file": rel(ctx.output_dir, target), "by_kind": by_kind}
    return CapabilityOutput({**output, "top": top}, confidence=0.6)


@capability("analyze_website")
async def analyze_website(params: AnalyzeWebsiteParams, ctx: TaskContext) -> CapabilityOutput:
    """Score a website on a rubric, or score every prospect of a CSV by its web presence."""
    if params.url:
        return await _analyze_url(params, ctx, params.url)
    return await _analyze_csv(params, ctx)
