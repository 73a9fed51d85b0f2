"""Executions: start one from a catalog plan, list and read them, steer them, read their events; the inbox."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from planexe_ax.bus import (
    CancelExecution,
    CommandRejected,
    ExecutionStatus,
    PauseExecution,
    Plan,
    ResolveInbox,
    ResumeExecution,
    StartExecution,
    check_id,
    new_id,
)
from planexe_ax.bus.messages import InboxAction
from planexe_ax.bus.tracing import start_span
from planexe_ax.errors import PlanTooLarge, PlanValidationError
from planexe_ax.plans.params import check_subtask_params
from planexe_ax.plans.problems import plan_error
from planexe_ax.plans.validation import check_plan
from planexe_ax.readmodel import audit, catalog, events, executions
from planexe_ax.readmodel.audit import AuditReport
from planexe_ax.readmodel.inbox import inbox_item, inbox_items
from planexe_ax.readmodel.replay import execution_at
from planexe_ax.readmodel.schemas import (
    EventPage,
    ExecutionAt,
    ExecutionDetail,
    ExecutionPage,
    ExecutionTree,
    InboxEntry,
    InboxList,
)
from planexe_ax.ws_gateway import plan_checks
from planexe_ax.ws_gateway.context import Gateway, NotProjected, NoVerdict, gateway, unavailable
from planexe_ax.ws_gateway.security import AUTH_RESPONSES, READ, ItemAnswerer, ItemReader, Operator, use_link

router = APIRouter(tags=["executions"], responses=AUTH_RESPONSES)
GW = Annotated[Gateway, Depends(gateway)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown execution."}}


class NewExecution(BaseModel):
    """What to run: a catalog plan, optionally pinned to agents. The token's name is recorded as who asked."""

    plan_id: str = Field(examples=["hello"])
    agent_id: str | None = Field(default=None, description="Pin every task of the plan to this agent.")
    pins: dict[str, str] = Field(
        default_factory=dict, description="task_id or action -> agent_id: work that goes to one agent only."
    )

    @field_validator("agent_id")
    @classmethod
    def _agent_is_an_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "agent id")

    @field_validator("pins")
    @classmethod
    def _pins_name_agents(cls, value: dict[str, str]) -> dict[str, str]:
        for agent_id in value.values():
            check_id(agent_id, "agent id")
        return value


class Steer(StrEnum):
    """The statuses a client may ask an execution to move to."""

    PAUSED = "PAUSED"
    RUNNING = "RUNNING"
    CANCELLED = "CANCELLED"


class ExecutionPatch(BaseModel):
    """The status an execution should move to."""

    status: Steer = Field(description="PAUSED pauses, RUNNING resumes a paused execution, CANCELLED cancels.")
    reason: str = ""


class Answer(BaseModel):
    """A person's answer to an inbox item; the token's name is recorded as who answered (``resolved_by``)."""

    action: InboxAction = Field(
        description="as the item offers: approve or reject an approval; complete or reject a human task; accept,"
        " edit or reject a result under review; retry, complete, skip or fail an escalation; acknowledge a notice"
        " (a webhook disabled), also after its execution ended"
    )
    comment: str = ""
    output: dict[str, Any] | None = Field(default=None, description="complete/edit: the result to record")
    params: dict[str, Any] | None = Field(default=None, description="retry: the subtask's params from now on")


@router.post(
    "/api/executions",
    status_code=status.HTTP_201_CREATED,
    summary="Start an execution of a catalog plan",
    response_model=ExecutionDetail,
    responses={
        404: {"description": "Unknown plan."},
        413: {"description": "The plan is larger than a bus message may carry (`PLANEXE_MAX_MESSAGE_BYTES`)."},
        422: {
            "description": "The plan's params do not fit its actions (`problems` names each), or the coordinator "
            "refused the plan."
        },
    },
)
async def create_execution(gw: GW, who: Operator, body: NewExecution) -> ExecutionDetail | JSONResponse:
    stored = await catalog.plan(gw.sessions, body.plan_id)
    if stored is None:
        raise HTTPException(status_code=404, detail=f"unknown plan {body.plan_id}")
    plan = Plan.model_validate(stored.plan)
    try:
        check_plan(plan, f"plan {plan.plan_id}", await plan_checks.schemas(gw))
    except PlanValidationError as exc:
        return plan_checks.refused(exc)
    pins = {task.task_id: body.agent_id for task in plan.tasks()} if body.agent_id else {}
    pins.update(body.pins)
    command = StartExecution(execution_id=new_id(), plan=plan, pins=pins, issued_by=who.name)
    try:
        with start_span(command.execution_id, "rest"):
            event = await _send(gw, command)
    except PlanTooLarge as exc:
        raise HTTPException(status_code=413, detail=str(exc)) from exc
    if isinstance(event, CommandRejected):
        raise HTTPException(status_code=422, detail=event.reason)
    return await _detail(gw, command.execution_id)


@router.get("/api/executions", summary="List executions, newest first", dependencies=[READ])
async def list_executions(
    gw: GW,
    plan_id: str | None = None,
    status: ExecutionStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ExecutionPage:
    return await executions.list_executions(
        gw.sessions, plan_id=plan_id, status=status.value if status else None, limit=limit, cursor=cursor
    )


@router.get(
    "/api/executions/{execution_id}",
    summary="Status, progress, counts, current tasks and blockers",
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def get_execution(
    gw: GW,
    execution_id: str,
    at_seq: Annotated[
        int | None,
        Query(ge=1, lt=2**63, description="Replay: the execution as it was right after this event (stream sequence)."),
    ] = None,
) -> ExecutionAt | ExecutionDetail:
    if at_seq is None:
        return await _detail(gw, execution_id)
    replayed = await execution_at(gw.sessions, execution_id, at_seq)
    if replayed is None:
        await _detail(gw, execution_id)  # 404 for an unknown execution
        raise HTTPException(status_code=404, detail=f"execution {execution_id} had no event yet at seq {at_seq}")
    return replayed


@router.get(
    "/api/executions/{execution_id}/tasks",
    summary="Plan overview and phases → tasks → subtasks with live states and planned times",
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def get_execution_tasks(gw: GW, execution_id: str) -> ExecutionTree:
    tree = await executions.execution_tree(gw.sessions, execution_id)
    if tree is None:
        raise HTTPException(status_code=404, detail=f"unknown execution {execution_id}")
    return tree


@router.patch(
    "/api/executions/{execution_id}",
    summary="Pause, resume or cancel",
    responses={**NOT_FOUND, 409: {"description": "Not possible in the execution's status; `detail` says why."}},
)
async def patch_execution(gw: GW, who: Operator, execution_id: str, body: ExecutionPatch) -> ExecutionDetail:
    await _detail(gw, execution_id)
    kinds = {Steer.PAUSED: PauseExecution, Steer.RUNNING: ResumeExecution, Steer.CANCELLED: CancelExecution}
    event = await _send(gw, kinds[body.status](execution_id=execution_id, reason=body.reason, issued_by=who.name))
    if isinstance(event, CommandRejected):
        raise HTTPException(status_code=409, detail=event.reason)
    return await _detail(gw, execution_id)


@router.get(
    "/api/executions/{execution_id}/events",
    summary="The execution's events, newest first (keyset-paginated)",
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def list_events(
    gw: GW,
    execution_id: str,
    type: Annotated[str | None, Query(description="only events of this type, e.g. subtask_state")] = None,
    task_id: str | None = None,
    agent_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> EventPage:
    await _detail(gw, execution_id)
    return await events.events_page(
        gw.sessions, execution_id, type_=type, task_id=task_id, agent_id=agent_id, limit=limit, cursor=cursor
    )


@router.get(
    "/api/executions/{execution_id}/audit",
    summary="Verify the execution's history: the stream's events against the read model's, as a hash chain",
    responses=NOT_FOUND,
    dependencies=[READ],
)
async def audit_execution(gw: GW, execution_id: str) -> AuditReport:
    await _detail(gw, execution_id)
    return await audit.verify(gw.bus, gw.sessions, execution_id)


@router.get("/api/inbox", summary="Work waiting for people (open items, or every item)", dependencies=[READ])
async def list_inbox(gw: GW, execution_id: str | None = None, include_closed: bool = False) -> InboxList:
    return InboxList(items=await inbox_items(gw.sessions, execution_id=execution_id, include_closed=include_closed))


@router.get(
    "/api/inbox/{item_id}",
    summary="One inbox item, open or closed (a one-time link's token may read its item)",
    responses={404: {"description": "Unknown item."}},
)
async def get_inbox_item(gw: GW, who: ItemReader, item_id: str) -> InboxEntry:
    item = await inbox_item(gw.sessions, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"unknown inbox item {item_id}")
    return item


@router.post(
    "/api/inbox/{item_id}",
    summary="Answer an inbox item",
    response_model=InboxEntry,
    responses={
        404: {"description": "Unknown item."},
        409: {"description": "Closed already, or not an answer it takes."},
        422: {"description": "A retry's params do not fit the subtask's action (`problems` names each)."},
    },
)
async def answer_inbox(
    request: Request, gw: GW, who: ItemAnswerer, item_id: str, body: Answer
) -> InboxEntry | JSONResponse:
    item = await inbox_item(gw.sessions, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"unknown inbox item {item_id}")
    if item.status != "open":
        raise HTTPException(status_code=409, detail=f"inbox item {item_id} is closed ({item.resolution})")
    if body.action == "retry" and body.params is not None and item.subtask_id:
        schemas = await plan_checks.schemas(gw)
        problems = check_subtask_params(item.subtask_id, item.action, body.params, schemas)
        if problems:
            return plan_checks.refused(plan_error(f"inbox item {item_id}", problems))
    use_link(request, who, item_id)
    command = ResolveInbox(
        execution_id=item.execution_id,
        item_id=item_id,
        action=body.action,
        output=body.output,
        params=body.params,
        comment=body.comment,
        issued_by=who.name,
    )
    event = await _send(gw, command)
    if isinstance(event, CommandRejected):
        raise HTTPException(status_code=409, detail=event.reason)
    answered = await inbox_item(gw.sessions, item_id)
    assert answered is not None
    return answered


async def _send(gw: Gateway, command: Any) -> Any:
    try:
        event, _ = await gw.command(command)
    except (NoVerdict, NotProjected) as exc:
        raise unavailable(exc) from exc
    return event


async def _detail(gw: Gateway, execution_id: str) -> ExecutionDetail:
    detail = await executions.execution_detail(gw.sessions, execution_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"unknown execution {execution_id}")
    if gw.settings.trace_url:
        return detail.model_copy(update={"trace_url": gw.settings.trace_url.format(trace_id=detail.trace_id)})
    return detail
