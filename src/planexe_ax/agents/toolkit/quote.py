"""``build_quote``: price a list of features by the hour, with an optional payment in kind."""

from __future__ import annotations

import json
import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import csv_text, rel, slug, write_text

CENT = Decimal("0.01")


class Feature(BaseModel):
    """One deliverable and its estimate."""

    name: str = Field(min_length=1)
    hours: float = Field(default=8.0, gt=0, le=10_000)
    description: str = ""


class InKindItem(BaseModel):
    """Something the client may pay with instead of money (the seed's puppies, eggs, equipment)."""

    item: str = Field(min_length=1)
    unit_value: float = Field(gt=0, description="Value of one unit in the quote's currency.")


class RateStructure(BaseModel):
    """How the work is priced."""

    hourly_rate: float = Field(default=75.0, ge=0)
    currency: str = Field(default="USD", min_length=3, max_length=3)
    discount_pct: float = Field(default=0.0, ge=0, le=100)
    support_months: int = Field(default=0, ge=0, le=60)
    support_monthly: float = Field(default=0.0, ge=0, description="Price of one month of support.")
    in_kind: list[InKindItem] = Field(default_factory=list, description="Payment alternatives in goods.")


class BuildQuoteParams(BaseModel):
    """Parameters of ``build_quote``."""

    features: list[Feature] = Field(min_length=1, description="Features; a plain string is a feature of 8 hours.")
    rate_structure: RateStructure = Field(default_factory=RateStructure)
    output_format: Literal["markdown", "csv", "json"] = "markdown"
    client: str = Field(default="", description="Who the quote is for.")

    @field_validator("features", mode="before")
    @classmethod
    def _names_are_features(cls, value: Any) -> Any:
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


def _money(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def compute_quote(params: BuildQuoteParams) -> dict[str, Any]:
    """Lines, totals and in-kind alternatives, money rounded half-up to cents (pure)."""
    rates = params.rate_structure
    rate = _money(rates.hourly_rate)
    amounts = [_money(Decimal(str(f.hours)) * rate) for f in params.features]
    lines = [{"feature": f.name, "hours": f.hours, "amount": a} for f, a in zip(params.features, amounts, strict=True)]
    build = sum(amounts, Decimal(0))
    discount = _money(build * Decimal(str(rates.discount_pct)) / 100)
    support = _money(_money(rates.support_monthly) * rates.support_months)
    total = build - discount + support
    in_kind = {i.item: math.ceil(total / Decimal(str(i.unit_value))) for i in rates.in_kind}
    return {
        "lines": lines,
        "hours": sum(f.hours for f in params.features),
        "subtotal": build,
        "discount": discount,
        "support": support,
        "total": total,
        "in_kind": in_kind,
    }


def _markdown(params: BuildQuoteParams, q: dict[str, Any]) -> str:
    cur = params.rate_structure.currency
    rows = [f"| {ln['feature']} | {ln['hours']:g} | {ln['amount']} {cur} |" for ln in q["lines"]]
    text = [
        f"# Quote{' for ' + params.client if params.client else ''}",
        "",
        "| Feature | Hours | Amount |",
        "|---|---:|---:|",
    ]
    text += [*rows, "", f"- Subtotal: {q['subtotal']} {cur}", f"- Discount: {q['discount']} {cur}"]
    text += [f"- Support: {q['support']} {cur}", f"- **Total: {q['total']} {cur}**"]
    if q["in_kind"]:
        text += ["", "## Or pay in kind", "", *(f"- {n} x {item}" for item, n in q["in_kind"].items())]
    return "\n".join(text) + "\n"


def _render(params: BuildQuoteParams, q: dict[str, Any]) -> tuple[str, str]:
    if params.output_format == "markdown":
        return ".md", _markdown(params, q)
    if params.output_format == "csv":
        rows = [{**ln, "amount": str(ln["amount"])} for ln in q["lines"]]
        rows.append({"feature": "TOTAL", "hours": q["hours"], "amount": str(q["total"])})
        return ".csv", csv_text(["feature", "hours", "amount"], rows)
    return ".json", json.dumps({"client": params.client, "currency": params.rate_structure.currency, **q}, default=str)


@capability("build_quote")
async def build_quote(params: BuildQuoteParams, ctx: TaskContext) -> dict[str, Any]:
    """Price features by the hour (with discount, support and in-kind alternatives) and write the quote."""
    q = compute_quote(params)
    suffix, text = _render(params, q)
    name = f"quote-{slug(params.client or 'client', 32)}-{ctx.subtask_id}{suffix}"
    path = write_text(ctx.output_dir / "quotes" / name, text, newline="" if suffix == ".csv" else "\n")
    await ctx.progress(100, f"quote {q['total']} {params.rate_structure.currency}")
    return {
        "file": rel(ctx.output_dir, path),
        "currency": params.rate_structure.currency,
        "hours": q["hours"],
        "total": float(q["total"]),
        "in_kind": q["in_kind"],
    }
