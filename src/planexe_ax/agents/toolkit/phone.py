"""``make_phone_call``: a deterministic SIMULATOR of an outbound sales call.

No call is placed. The outcome, duration, interest level and the transcript are derived from a
SHA-256 of the phone number and script, so the same call always goes the same way.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import Draw, rel, seed, write_text

_PAINS = (
    "keeping breeding records in spreadsheets",
    "paying for a website builder they barely use",
    "inquiries arriving by email and getting lost",
    "no way to manage the waiting list",
    "tracking vaccination dates by hand",
    "a third-party listing that takes a cut",
)
_REPLIES = (
    "We've been thinking about this for a while.",
    "Send me something in writing and I'll look at it.",
    "We're happy with what we have, to be honest.",
    "How much would something like that cost?",
    "Could you call back next week?",
)


class MakePhoneCallParams(BaseModel):
    """Parameters of ``make_phone_call``."""

    phone: str = Field(description="Number to call, e.g. 860-555-0142.")
    script: str = Field(default="", description="What to say: the pitch and the questions.")
    record: bool = Field(default=True, description="Keep a transcript of the (simulated) call.")
    contact_name: str = Field(default="", description="Who is expected to answer.")

    @field_validator("phone")
    @classmethod
    def _digits(cls, value: str) -> str:
        digits = re.sub(r"\D", "", value)
        if not 7 <= len(digits) <= 15:
            raise ValueError(f"phone {value!r} must have 7 to 15 digits")
        return value


def simulate_call(params: MakePhoneCallParams) -> dict[str, Any]:
    """The simulated outcome of a call (pure; the same params give the same outcome)."""
    draw = Draw(seed("call", re.sub(r"\D", "", params.phone), params.script))
    roll = draw.number(100)
    outcome = "answered" if roll < 60 else "voicemail" if roll < 85 else "no_answer"
    if outcome != "answered":
        return {
            "outcome": outcome,
            "duration_min": 1 if outcome == "voicemail" else 0,
            "interest_level": 0,
            "notes": [],
        }
    pains = sorted({draw.pick(_PAINS) for _ in range(2)})
    return {
        "outcome": outcome,
        "duration_min": draw.between(3, 25),
        "interest_level": draw.between(1, 10),
        "notes": [*(f"pain point: {p}" for p in pains), f"reply: {draw.pick(_REPLIES)}"],
    }


def _transcript(params: MakePhoneCallParams, result: dict[str, Any]) -> str:
    who = params.contact_name or params.phone
    lines = [
        f"# SIMULATED call to {who}",
        "",
        "> Produced by the make_phone_call simulator: no call was placed and nobody was spoken to.",
        "",
        f"- phone: {params.phone}",
        f"- outcome: {result['outcome']}",
        f"- duration: {result['duration_min']} min",
        f"- interest level: {result['interest_level']}/10",
        "",
        "## Script",
        "",
        params.script or "(none)",
        "",
        "## Notes",
        "",
        *(f"- {note}" for note in result["notes"] or ["(no conversation)"]),
    ]
    return "\n".join(lines) + "\n"


@capability("make_phone_call")
async def make_phone_call(params: MakePhoneCallParams, ctx: TaskContext) -> dict[str, Any]:
    """SIMULATOR of a phone call: a deterministic outcome and transcript; no call is placed."""
    result = simulate_call(params)
    output: dict[str, Any] = {
        "simulator": True,
        "source": "make_phone_call simulator (no call was placed)",
        "phone": params.phone,
        **result,
    }
    if params.record:
        digits = re.sub(r"\D", "", params.phone)
        path = write_text(ctx.output_dir / "calls" / f"call-{digits}-{ctx.subtask_id}.md", _transcript(params, result))
        output["transcript"] = rel(ctx.output_dir, path)
    await ctx.progress(100, f"simulated call to {params.phone}: {result['outcome']}")
    return output
