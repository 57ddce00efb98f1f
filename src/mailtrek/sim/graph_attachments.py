"""Graph attachment routes (filled in next)."""

from __future__ import annotations

from fastapi import APIRouter

from mailtrek.sim.state import SimState


def attachments_router(state: SimState) -> APIRouter:
    """Return the attachment routes."""
    return APIRouter()
