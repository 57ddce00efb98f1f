"""Who works on which mailbox now: live leases, for `batch show`."""

from __future__ import annotations

from sqlalchemy import select

from mailtrek.orchestrate.home import Home, as_utc, utcnow
from mailtrek.state.orchestration import batch_users


def lease_holders(home: Home, batch: str) -> dict[str, str]:
    """Return ``{email: owner}`` for the users of ``batch`` whose lease is live.

    The owner is ``HOST:PID:RANDOM`` of the runner or worker moving the mailbox.
    """
    u = batch_users.c
    with home.engine.connect() as c:
        rows = c.execute(select(u.email, u.lease_owner, u.lease_expires).where(
            u.batch == batch, u.lease_owner.is_not(None))).all()
    now = utcnow()
    return {r.email: r.lease_owner for r in rows if (as_utc(r.lease_expires) or now) > now}
