"""Webhooks: register endpoints that receive events signed as Standard Webhooks; their delivery log.

Every route needs the operator role. A target must pass the egress policy (``PLANEXE_FETCH_ALLOW`` lets
loopback or private addresses through) when it is registered or changed, and again on each delivery.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, Field, field_validator

from planexe_ax.bus import check_id, new_id
from planexe_ax.bus.replay import events_last_seq
from planexe_ax.readmodel import webhooks as store
from planexe_ax.readmodel.schemas import DeliveryPage, WebhookList, WebhookSecret, WebhookView
from planexe_ax.webhooks.send import BadTarget, check_target
from planexe_ax.ws_gateway.context import Gateway, gateway
from planexe_ax.ws_gateway.security import AUTH_RESPONSES, OPERATE, Operator

T = TypeVar("T")
router = APIRouter(tags=["webhooks"], responses=AUTH_RESPONSES, dependencies=[OPERATE])
GW = Annotated[Gateway, Depends(gateway)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No webhook (or delivery) with this id."}}
BAD_TARGET: dict[int | str, dict[str, Any]] = {
    422: {"description": "The url is not http(s), does not resolve, or the egress policy refuses it."}
}


class _Ids(BaseModel):
    @field_validator("execution_id", "plan_id", check_fields=False)
    @classmethod
    def _an_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "id")


class NewWebhook(_Ids):
    """A webhook to register."""

    url: str = Field(description="http(s) URL that receives a POST per event", max_length=2000)
    event_types: list[str] = Field(default_factory=list, description="only these event types (empty: all)")
    execution_id: str | None = Field(default=None, description="only this execution's events")
    plan_id: str | None = Field(default=None, description="only the events of executions of this plan")
    description: str = Field(default="", max_length=500)


class WebhookPatch(_Ids):
    """Fields to change; ``status: active`` re-enables a disabled webhook (its pending deliveries resume)."""

    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | None = None
    execution_id: str | None = None
    plan_id: str | None = None
    description: str | None = Field(default=None, max_length=500)
    status: Literal["active", "disabled"] | None = None


class Redelivery(BaseModel):
    """A delivery made pending again."""

    delivery_id: str
    status: Literal["pending"] = "pending"


async def _checked(gw: Gateway, url: str) -> None:
    try:
        await check_target(url, gw.settings.fetch_allow)
    except BadTarget as exc:
        raise HTTPException(422, str(exc)) from exc


def _found(value: T | None, webhook_id: str) -> T:
    if value is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
    return value


@router.post(
    "/api/webhooks",
    summary="Register a webhook; the answer holds its signing secret",
    status_code=status.HTTP_201_CREATED,
    responses=BAD_TARGET,
)
async def create_webhook(gw: GW, who: Operator, body: NewWebhook) -> WebhookSecret:
    await _checked(gw, body.url)
    new = store.NewWebhook(
        url=body.url,
        event_types=body.event_types,
        execution_id=body.execution_id,
        plan_id=body.plan_id,
        description=body.description,
        created_by=who.name,
        after_seq=await events_last_seq(gw.bus),
    )
    return await store.create_webhook(gw.sessions, f"wh_{new_id()}", new)


router.add_api_route(
    "/api/webhooks/register",
    create_webhook,
    methods=["POST"],
    summary="Register a webhook (the same as POST /api/webhooks)",
    status_code=status.HTTP_201_CREATED,
    responses=BAD_TARGET,
    response_model=WebhookSecret,
)


@router.get("/api/webhooks", summary="Every webhook (without secrets)")
async def list_webhooks(gw: GW) -> WebhookList:
    return WebhookList(items=await store.list_webhooks(gw.sessions))


@router.get("/api/webhooks/{webhook_id}", summary="One webhook", responses=NOT_FOUND)
async def get_webhook(gw: GW, webhook_id: str) -> WebhookView:
    return _found(await store.get_webhook(gw.sessions, webhook_id), webhook_id)


@router.patch("/api/webhooks/{webhook_id}", summary="Change a webhook", responses={**NOT_FOUND, **BAD_TARGET})
async def patch_webhook(gw: GW, webhook_id: str, body: WebhookPatch) -> WebhookView:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        await _checked(gw, changes["url"])
    if any(changes.get(name) is None for name in ("url", "event_types", "description", "status") if name in changes):
        raise HTTPException(422, "url, event_types, description and status "
                            "cannot be null")  # fmt: skip
    return _found(await store.update_webhook(gw.sessions, webhook_id, changes), webhook_id)


@router.delete(
    "/api/webhooks/{webhook_id}",
    summary="Delete a webhook and its delivery log",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
)
async def delete_webhook(gw: GW, webhook_id: str) -> Response:
    if not await store.delete_webhook(gw.sessions, webhook_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/webhooks/{webhook_id}/rotate-secret",
    summary="Give a webhook a new signing secret (the old one stops at once)",
    responses=NOT_FOUND,
)
async def rotate_secret(gw: GW, webhook_id: str) -> WebhookSecret:
    return _found(await store.rotate_secret(gw.sessions, webhook_id), webhook_id)


@router.get(
    "/api/webhooks/{webhook_id}/deliveries",
    summary="The delivery log: each event owed, newest first, with every attempt",
    responses=NOT_FOUND,
)
async def list_deliveries(gw: GW, webhook_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DeliveryPage:
    _found(await store.get_webhook(gw.sessions, webhook_id), webhook_id)
    return await store.deliveries_page(gw.sessions, webhook_id, limit)


@router.post(
    "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    summary="Send a delivery again (delivered or failed ones too), as soon as the delivery service can",
    status_code=status.HTTP_202_ACCEPTED,
    responses=NOT_FOUND,
)
async def redeliver(gw: GW, webhook_id: str, delivery_id: str) -> Redelivery:
    if not await store.redeliver(gw.sessions, webhook_id, delivery_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no delivery {delivery_id} of webhook {webhook_id}")
    return Redelivery(delivery_id=delivery_id)
