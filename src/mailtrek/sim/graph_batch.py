"""Graph JSON batching (filled in next)."""

from __future__ import annotations

from fastapi import APIRouter

from mailtrek.sim.state import SimState


def batch_router(state: SimState) -> APIRouter:
    """Return the $batch route."""
    return APIRouter()
