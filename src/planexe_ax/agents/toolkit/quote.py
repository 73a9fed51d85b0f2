"""``build_quote``: price a list of features by the hour, with an optional payment in kind."""

from __future__ import annotations

import json
import math
import re
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
    """How the work is priced: by the hour (an estimate) or at a fixed price."""

    basis: Literal["hourly", "fixed"] = Field(
        default="hourly", description="hourly: billed by the hour, the quote estimates; fixed: the total is binding."
    )
    hourly_rate: float = Field(default=75.0, ge=0)
    fixed_price: float | None = Field(
        default=None, ge=0, description="fixed: the total before discount and support; unset: hours x rate."
    )
    currency: str = Field(default="USD", min_length=3, max_length=3)
    discount_pct: float = Field(default=0.0, ge=0, le=100)
    support_months: int = Field(default=0, ge=0, le=60)
    support_monthly: float = Field(default=0.0, ge=0, description="Price of one month of support.")
    in_kind: list[InKindItem] = Field(default_factory=list, description="Payment alternatives in goods.")
    note: str = Field(default="", description="The rate structure as the plan said it, when it was a phrase.")


RATE_PHRASES = ("hourly", "fixed", "$80/h", "80 EUR per hour", "fixed price 4500 USD", "time and materials")


class BuildQuoteParams(BaseModel):
    """Parameters of ``build_quote``."""

    features: list[Feature] = Field(min_length=1, description="Features; a plain string is a feature of 8 hours.")
    rate_structure: RateStructure = Field(
        default_factory=RateStructure,
        description="An object, a number (the hourly rate), or a word or phrase: 'hourly', 'fixed', '$80/h', "
        "'80 EUR per hour', 'fixed price 4500 USD', 'time and materials'. A phrase that names no rate keeps the "
        "default rates and is quoted as the rate structure's note.",
        examples=[{"hourly_rate": 80, "support_months": 3, "support_monthly": 100}, *RATE_PHRASES],
    )
    output_format: Literal["markdown", "csv", "json"] = Field(
        default="markdown", description="markdown (md), csv or json; any case."
    )
    client: str = Field(default="", description="Who the quote is for.")

    @field_validator("features", mode="before", json_schema_input_type=list[Feature | str] | str)
    @classmethod
    def _names_are_features(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in re.split(r"[,;\n]", value) if part.strip()]
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @field_validator("rate_structure", mode="before", json_schema_input_type=RateStructure | str | float | None)
    @classmethod
    def _phrase(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"hourly_rate": value}
        return parse_rate_phrase(value) if isinstance(value, str) else value

    @field_validator("output_format", mode="before", json_schema_input_type=str)
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower().lstrip(".")
            return "markdown" if word == "md" else word
        return value


_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_AMOUNT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(k)?\b", re.IGNORECASE)
_CODE = re.compile(r"\b(USD|EUR|GBP|JPY|CHF|DKK|SEK|NOK|CAD|AUD|NZD|INR|CNY)\b", re.IGNORECASE)
_PER_HOUR = re.compile(r"/\s*h(?:ou)?r?\b|\bper\s+hour\b|\ban\s+hour\b|\bhourly\b|\bph\b", re.IGNORECASE)
_FIXED = re.compile(r"\b(fixed|flat|lump[\s-]?sum|fixed[\s-]?price|fixed[\s-]?fee|per\s+project)\b", re.IGNORECASE)


def parse_rate_phrase(phrase: str) -> dict[str, Any]:
    """A rate structure from a word or phrase (``"fixed"``, ``"$80/h"``, ``"fixed price 4500 EUR"``).

    A phrase that names no rate keeps the default rates; the phrase is kept as the note either way.
    """
    text = phrase.strip()
    rates: dict[str, Any] = {"note": text[:200]}
    fixed = bool(_FIXED.search(text)) and not _PER_HOUR.search(text)
    if fixed:
        rates["basis"] = "fixed"
    currency = next((code for sym, code in _SYMBOLS.items() if sym in text), None)
    code = _CODE.search(text)
    rates["currency"] = code.group(1).upper() if code else currency or "USD"
    amount = _AMOUNT.search(text)
    if amount:
        value = float(amount.group(1).replace(",", "")) * (1000 if amount.group(2) else 1)
        rates["fixed_price" if fixed else "hourly_rate"] = value
    return rates


def _money(value: Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def _amounts(params: BuildQuoteParams) -> list[Decimal]:
    """Each feature's amount: hours x rate, or its share (by hours) of a fixed price."""
    rates = params.rate_structure
    rate = _money(rates.hourly_rate)
    amounts = [_money(Decimal(str(f.hours)) * rate) for f in params.features]
    if rates.basis != "fixed" or rates.fixed_price is None:
        return amounts
    price = _money(rates.fixed_price)
    hours = sum(Decimal(str(f.hours)) for f in params.features)
    shares = [_money(price * Decimal(str(f.hours)) / hours) for f in params.features]
    shares[-1] += price - sum(shares, Decimal(0))  # rounding: the lines add up to the price exactly
    return shares


def compute_quote(params: BuildQuoteParams) -> dict[str, Any]:
    """Lines, totals and in-kind alternatives, money rounded half-up to cents (pure)."""
    rates = params.rate_structure
    amounts = _amounts(params)
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
        "basis": rates.basis,
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
    basis = "fixed price" if q["basis"] == "fixed" else f"estimate at {params.rate_structure.hourly_rate:g} {cur}/h"
    note = params.rate_structure.note
    text += ["", f"Pricing: {basis}" + (f" (as asked: {note})" if note else "")]
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
        "basis": q["basis"],
    }
