"""What the gateway checks plans with, and how it refuses one: 422 with every problem named."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from planexe_ax.bus import CapabilityCard
from planexe_ax.errors import PlanValidationError
from planexe_ax.plans.params import ParamsSchema, action_schemas
from planexe_ax.plans.problems import Problem
from planexe_ax.readmodel import agents as read_agents
from planexe_ax.ws_gateway.context import Gateway


async def schemas(gw: Gateway) -> dict[str, ParamsSchema]:
    """The built-in actions' params models, and the JSON schemas in the cards of the agents the read model knows."""
    from planexe_ax.agents.toolkit import params_models

    capabilities = []
    for agent in await read_agents.list_agents(gw.sessions):
        for cap in agent.capabilities:
            try:
                capabilities.append(CapabilityCard.model_validate(cap.model_dump()))
            except ValidationError:
                continue  # a card the read model keeps but cannot describe offers nothing to check against
    return action_schemas(params_models(), capabilities)


def refused(exc: PlanValidationError) -> JSONResponse:
    """422: ``detail`` is the message of ``planexe-ax plan validate``; ``problems`` lists each problem."""
    return JSONResponse(status_code=422, content={"detail": str(exc), "problems": problem_list(exc.problems)})


def problem_list(problems: list[Any]) -> list[dict[str, Any]]:
    """Problems as JSON (each with ``line``, ``where``, ``message`` and, where known, subtask, action, field)."""
    return [p.as_json() for p in problems if isinstance(p, Problem)]


def warning_lines(warnings: list[Problem]) -> list[str]:
    """Warnings as the lines ``plan validate`` prints."""
    return [w.line() for w in warnings]
