"""The dashboard page and its static files (filled in by the dashboard work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
