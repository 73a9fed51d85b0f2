"""The live WebSocket stream of one execution (filled in by the stream work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["executions"])
