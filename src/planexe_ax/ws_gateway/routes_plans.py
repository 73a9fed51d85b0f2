"""Plans: the catalog of uploaded (and run) plans, kept in the ``ax-plans`` bucket and mirrored by the projector."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

from planexe_ax.bus import Plan
from planexe_ax.errors import PlanTooLarge, PlanValidationError
from planexe_ax.plans.validation import check_plan, check_plan_text
from planexe_ax.readmodel import catalog
from planexe_ax.readmodel.projection import PLANS_CHECKPOINT
from planexe_ax.readmodel.schemas import ImportedPlan, PlanDetail, PlanPage, PlanTasks, UploadedPlan
from planexe_ax.ws_gateway import plan_checks
from planexe_ax.ws_gateway.context import Gateway, NotProjected, gateway, unavailable
from planexe_ax.ws_gateway.security import AUTH_RESPONSES, OPERATE, READ

router = APIRouter(prefix="/api/plans", tags=["plans"], responses=AUTH_RESPONSES)
GW = Annotated[Gateway, Depends(gateway)]
MAX_UPLOAD = 32 * 1024 * 1024

PLAN_EXAMPLE = {
    "plan_id": "hello",
    "goal": "Say hello",
    "phases": [
        {
            "phase_id": "p1",
            "name": "Greet",
            "tasks": [
                {
                    "task_id": "t1",
                    "title": "Write the greeting",
                    "subtasks": [{"subtask_id": "s1", "action": "draft_document", "params": {"template": "# Hello\n"}}],
                }
            ],
        }
    ],
}


@router.get("", summary="List plans, newest first", dependencies=[READ])
async def list_plans(
    gw: GW,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> PlanPage:
    return await catalog.list_plans(gw.sessions, limit, cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a plan (PlanExe-AX JSON)",
    dependencies=[OPERATE],
    response_model=UploadedPlan,
    responses={
        200: {"model": UploadedPlan, "description": "A plan with this id was replaced."},
        413: {"description": "The plan is larger than a bus message may carry (`PLANEXE_MAX_MESSAGE_BYTES`)."},
        422: {
            "description": "The plan is invalid; `detail` is the message of `planexe-ax plan validate` (a line per "
            "problem), `problems` lists them with the subtask, action and field involved."
        },
    },
    # The body is read as text so that malformed JSON gets the message of `plan validate` (line, column).
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}, "examples": {"hello": {"value": PLAN_EXAMPLE}}}
            },
        }
    },
)
async def upload_plan(gw: GW, request: Request, response: Response) -> UploadedPlan | JSONResponse:
    text = (await request.body()).decode("utf-8", errors="replace")
    try:
        checked = check_plan_text(text, "plan", await plan_checks.schemas(gw))
    except PlanValidationError as exc:
        return plan_checks.refused(exc)
    parsed = checked.plan
    replaced = await catalog.plan(gw.sessions, parsed.plan_id) is not None
    stored = await _store(gw, parsed)
    if replaced:
        response.status_code = status.HTTP_200_OK
    return UploadedPlan.model_validate({**dict(stored), "warnings": plan_checks.warning_lines(checked.warnings)})


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    summary="Import a PlanExe run (the zip of its output folder)",
    dependencies=[OPERATE],
    response_model=ImportedPlan,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={422: {"description": "Not a PlanExe run, or its plan is invalid (strict mode)."}},
)
async def import_run(
    gw: GW,
    request: Request,
    strict: Annotated[bool, Query(description="refuse instead of repairing")] = False,
    siblings: Annotated[Literal["parallel", "sequential"], Query()] = "parallel",
    decompose: Annotated[bool, Query(description="give executable tasks subtasks")] = True,
) -> ImportedPlan | JSONResponse:
    from planexe_ax.plans.importers import import_planexe_run

    body = await request.body()
    if not body:
        raise HTTPException(status_code=422, detail="send the zip of a PlanExe run folder as the request body")
    if len(body) > MAX_UPLOAD:
        raise HTTPException(status_code=413, detail=f"the upload is larger than {MAX_UPLOAD // (1024 * 1024)} MiB")

    schemas = await plan_checks.schemas(gw)

    def run_import() -> tuple[Plan, dict[str, Any]]:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "run.zip"
            path.write_bytes(body)
            try:
                result = import_planexe_run(path, strict=strict, siblings=siblings, decompose=decompose)
            except PlanValidationError as exc:  # name the upload, not the server's temporary file
                raise PlanValidationError(str(exc).replace(str(path), "upload")) from exc
        check_plan(result.plan, "upload", schemas)
        report = {**result.report, "source": "upload"}
        plan = result.plan.model_copy(update={"metadata": {**result.plan.metadata, "import_report": report}})
        return plan, report

    try:
        plan, report = await asyncio.to_thread(run_import)
    except PlanValidationError as exc:
        return plan_checks.refused(exc)
    stored = await _store(gw, plan)
    return ImportedPlan.model_validate({**dict(stored), "import_report": report})


@router.get(
    "/{plan_id}",
    summary="One plan with its whole document",
    responses={404: {"description": "Unknown."}},
    dependencies=[READ],
)
async def get_plan(gw: GW, plan_id: str) -> PlanDetail:
    return await _known(gw, plan_id)


@router.get(
    "/{plan_id}/tasks",
    summary="The plan's tasks in order, with phase and subtasks",
    responses={404: {"description": "Unknown."}},
    dependencies=[READ],
)
async def get_plan_tasks(gw: GW, plan_id: str) -> PlanTasks:
    tasks = await catalog.plan_tasks(gw.sessions, plan_id)
    if tasks is None:
        raise HTTPException(status_code=404, detail=f"unknown plan {plan_id}")
    return tasks


@router.delete(
    "/{plan_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a plan (its past executions stay)",
    dependencies=[OPERATE],
    responses={404: {"description": "Unknown."}, 409: {"description": "An execution of it is running."}},
)
async def delete_plan(gw: GW, plan_id: str) -> Response:
    await _known(gw, plan_id)
    running = await catalog.open_executions_of(gw.sessions, plan_id)
    if running:
        raise HTTPException(
            status_code=409,
            detail=f"plan {plan_id} has {len(running)} execution(s) that have not ended "
            f"({', '.join(running[:3])}); cancel them first",
        )
    revision = await gw.bus.delete_plan(plan_id)
    try:
        await gw.wait_projected(revision, PLANS_CHECKPOINT)
    except NotProjected as exc:
        raise unavailable(exc) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _known(gw: Gateway, plan_id: str) -> PlanDetail:
    stored = await catalog.plan(gw.sessions, plan_id)
    if stored is None:
        raise HTTPException(status_code=404, detail=f"unknown plan {plan_id}")
    return stored


async def _store(gw: Gateway, plan: Plan) -> PlanDetail:
    try:
        revision = await gw.bus.put_plan(plan.plan_id, plan.model_dump_json(by_alias=True).encode())
    except PlanTooLarge as exc:
        raise HTTPException(status_code=413, detail=str(exc)) from exc
    try:
        await gw.wait_projected(revision, PLANS_CHECKPOINT)
    except NotProjected as exc:
        raise unavailable(exc) from exc
    stored = await catalog.plan(gw.sessions, plan.plan_id)
    if stored is None:  # deleted again between the two reads
        raise HTTPException(status_code=409, detail=f"plan {plan.plan_id} was deleted meanwhile")
    return stored
