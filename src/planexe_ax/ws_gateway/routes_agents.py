"""Agents and the HTTP agent protocol (filled in by the agents work)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["agents"])
