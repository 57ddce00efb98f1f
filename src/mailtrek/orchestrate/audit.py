"""The audit log: who did what to which object, when, and how it ended.

Secrets never reach it: callers give an action, a target name and the *names* of the
options used, never their values. Recording never fails the action it records.
"""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from mailtrek.orchestrate.home import Home, as_utc, utcnow
from mailtrek.secrets import redact
from mailtrek.state.admin import audit_log

log = logging.getLogger("mailtrek.audit")


@dataclass(slots=True)
class AuditEntry:
    """One recorded admin action."""

    at: datetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    outcome: str

    def as_dict(self) -> dict[str, object]:
        return {"at": self.at.isoformat(timespec="seconds"), "actor": self.actor, "action": self.action,
                "target": self.target, "detail": self.detail, "outcome": self.outcome}


def cli_actor() -> str:
    """Return ``cli:USER@HOST`` for the person running this command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "?"
    return f"cli:{user}@{socket.gethostname()}"


def record(home: Home, actor: str, action: str, target: str | None = None, detail: str | None = None,
           outcome: str = "ok") -> None:
    """Append one entry; log a warning instead of raising when the database refuses it."""
    row = {"at": utcnow(), "actor": actor[:255], "action": action[:128],
           "target": redact(target)[:512] if target else None, "detail": redact(detail) if detail else None,
           "outcome": outcome[:32]}
    try:
        with home.engine.begin() as c:
            c.execute(insert(audit_log).values(**row))
    except Exception as e:  # the action is done; a lost audit line must not undo or hide it
        log.warning("could not record %s in the audit log: %s", action, e.__class__.__name__)


def entries(home: Home, *, limit: int = 200, target: str | None = None) -> list[AuditEntry]:
    """Return the newest ``limit`` entries, newest first (only ``target``'s when given)."""
    q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if target:
        q = q.where(audit_log.c.target == target)
    with home.engine.connect() as c:
        rows = c.execute(q).mappings().all()
    return [AuditEntry(at=as_utc(r["at"]) or utcnow(), actor=r["actor"], action=r["action"], target=r["target"],
                       detail=r["detail"], outcome=r["outcome"]) for r in rows]
