"""One user of a batch: new credentials and retry, sync now, stop, resume, remove, move, export.

The CLI, the JSON API and the dashboard call these functions; each changes rows only
(the runner notices and does the work) and every status change follows
:mod:`mailtrek.orchestrate.states`. Passwords are stored encrypted and never returned.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from mailtrek.errors import ConflictError, NotFoundError, UsageError
from mailtrek.orchestrate.batches import Batch, get_batch, settle
from mailtrek.orchestrate.csvfile import UserRow
from mailtrek.orchestrate.home import Home, utcnow
from mailtrek.orchestrate.states import (
    ACTIVE_USER,
    TERMINAL_BATCH,
    BatchStatus,
    UserStatus,
    can_move,
    settle_batch,
    user_resume_status,
)
from mailtrek.secrets import remember
from mailtrek.state.orchestration import batch_users, batches, user_runs

U = UserStatus
# Batch statuses in which a user set to run again is picked up by the runner.
RUNNING = (BatchStatus.SYNCING, BatchStatus.SYNCED, BatchStatus.SYNCED_WITH_ERRORS,
           BatchStatus.FAILED, BatchStatus.COMPLETING)


@dataclass(slots=True)
class Outcome:
    """What an action did to one user, for the CLI line and the API answer."""

    email: str
    status: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"email": self.email, "status": self.status, "message": self.message}


def get_user(home: Home, batch: str, email: str) -> dict[str, Any]:
    """Return the row of ``email`` in ``batch`` (password column left out); UsageError if absent."""
    get_batch(home, batch)
    cols = [c for c in batch_users.c if c.name != "password_enc"]
    with home.engine.connect() as c:
        r = c.execute(select(*cols).where(batch_users.c.batch == batch,
                                          batch_users.c.email == email.strip().lower())).mappings().first()
    if r is None:
        raise NotFoundError(f"batch {batch!r} has no user {email!r}",
                         hint=f"see `mailtrek batch show {batch}`")
    return dict(r)


def _running(row: dict[str, Any]) -> bool:
    """True while a runner holds a live lease on the user."""
    from mailtrek.orchestrate.home import as_utc

    exp = as_utc(row.get("lease_expires"))
    return row.get("lease_owner") is not None and exp is not None and exp > utcnow()


def _refuse_terminal(b: Batch, what: str) -> None:
    if b.status in TERMINAL_BATCH:
        raise UsageError(f"cannot {what}: batch {b.name} is {b.status}",
                         hint=f"move the user to a new batch: `mailtrek batch move-user {b.name} --user EMAIL "
                              "--to OTHER`, or create a new batch for them")


def _reopen(c: Any, b: Batch) -> None:
    """A user runs again: a Failed or Synced batch goes back to Syncing, then settles."""
    if b.status not in (BatchStatus.FAILED, BatchStatus.SYNCED, BatchStatus.SYNCED_WITH_ERRORS):
        return
    statuses = c.execute(select(batch_users.c.status).where(batch_users.c.batch == b.name)).scalars().all()
    new = settle_batch(BatchStatus.SYNCING, [UserStatus(s) for s in statuses])
    c.execute(update(batches).where(batches.c.name == b.name).values(
        status=new, started_at=b.started_at or utcnow()))


# -- credentials and retry -------------------------------------------------------------------
def retry_user(home: Home, batch: str, email: str, *, password: str | None = None,
               username: str | None = None) -> Outcome:
    """Store new credentials for ``email`` (when given) and set the user to run again.

    A Failed, Stopped or Synced user runs again at once (the initial sync when it never
    finished one); in a Created or Stopped batch only the credentials change. Refuses in
    a finished batch and while the user's sync runs (stop it first).
    """
    remember(password)
    b = get_batch(home, batch)
    _refuse_terminal(b, "retry a user")
    row = get_user(home, batch, email)
    status = UserStatus(row["status"])
    if status in ACTIVE_USER and _running(row):
        raise UsageError(f"{row['email']} is syncing right now",
                         hint=f"stop it first: `mailtrek batch stop {batch} --user {row['email']}`")
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now, "error": None}
    if password is not None:
        if not password:
            raise UsageError("the new password is empty")
        values["password_enc"] = home.box.encrypt(password)
    if username is not None and username.strip():
        values["username"] = username.strip()
    if b.status == BatchStatus.CREATED:
        new, message = status, "credentials stored; the batch has not started yet"
    elif b.status == BatchStatus.STOPPED:
        new = U.STOPPED if status != U.QUEUED else status
        message = f"credentials stored; the batch is stopped: `mailtrek batch resume {batch}` runs it"
    else:
        new = user_resume_status(bool(row["ever_synced"]))
        values["next_sync"] = now
        message = "runs again now" + (" (initial sync)" if new == U.QUEUED else " (incremental sync)")
    values["status"] = new
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.batch == batch,
                                            batch_users.c.email == row["email"]).values(**values))
        if new != status or "next_sync" in values:
            _reopen(c, b)
    settle(home, batch)
    return Outcome(row["email"], new.value, message)


def retry_from_csv(home: Home, batch: str, users: list[UserRow]) -> list[Outcome]:
    """Retry every CSV row's user with that row's UserName and Password (see :func:`retry_user`).

    Every address must belong to ``batch``; nothing changes when one does not.
    """
    b = get_batch(home, batch)
    with home.engine.connect() as c:
        known = set(c.execute(select(batch_users.c.email).where(batch_users.c.batch == b.name)).scalars())
    missing = [u.email for u in users if u.email.lower() not in known]
    if missing:
        raise UsageError(f"{len(missing)} address(es) of the CSV are not in batch {batch}: "
                         + ", ".join(missing[:10]), hint="add them with a new batch; nothing was changed")
    return [retry_user(home, batch, u.email, password=u.password or None, username=u.username)
            for u in users]


# -- sync now ----------------------------------------------------------------------------------
def sync_now(home: Home, batch: str, email: str | None = None) -> list[Outcome]:
    """Run an incremental sync now for every synced user of ``batch`` (or for ``email`` only).

    Users already queued or syncing are left as they are; failed and stopped ones are
    reported with what to do. Raises UsageError for a batch that is not running.
    """
    b = get_batch(home, batch)
    if b.status == BatchStatus.CREATED:
        raise UsageError(f"batch {batch} has not started", hint=f"run `mailtrek batch start {batch}`")
    if b.status == BatchStatus.STOPPED:
        raise UsageError(f"batch {batch} is stopped", hint=f"run `mailtrek batch resume {batch}`")
    _refuse_terminal(b, "sync now")
    rows = [get_user(home, batch, email)] if email else _rows(home, batch)
    now = utcnow()
    out = []
    for r in rows:
        st = UserStatus(r["status"])
        if st == U.SYNCED:
            with home.engine.begin() as c:
                c.execute(update(batch_users).where(batch_users.c.batch == batch, batch_users.c.email == r["email"],
                                                    batch_users.c.status == U.SYNCED).values(next_sync=now))
            msg = "final sync starts now" if b.status == BatchStatus.COMPLETING else "incremental sync starts now"
        elif st in (U.QUEUED, *ACTIVE_USER):
            msg = "already queued or syncing"
        elif st == U.FAILED:
            msg = f"failed: fix and retry with `mailtrek batch retry {batch} --user {r['email']}`"
        elif st == U.STOPPED:
            msg = f"stopped: `mailtrek batch resume {batch} --user {r['email']}`"
        else:
            msg = f"nothing to sync ({st})"
        out.append(Outcome(r["email"], st.value, msg))
    if email and out[0].status in (U.FAILED, U.STOPPED, U.COMPLETED):
        raise UsageError(f"{out[0].email}: {out[0].message}")
    return out


def _rows(home: Home, batch: str) -> list[dict[str, Any]]:
    with home.engine.connect() as c:
        return [dict(r) for r in c.execute(
            select(batch_users.c.email, batch_users.c.status, batch_users.c.ever_synced,
                   batch_users.c.error, batch_users.c.username, batch_users.c.line, batch_users.c.runs)
            .where(batch_users.c.batch == batch).order_by(batch_users.c.line)).mappings()]


# -- stop, resume, remove, move ----------------------------------------------------------------
def stop_user(home: Home, batch: str, email: str) -> Outcome:
    """Stop one user: no new sync starts; a running one is interrupted by its runner."""
    b = get_batch(home, batch)
    _refuse_terminal(b, "stop a user")
    row = get_user(home, batch, email)
    st = UserStatus(row["status"])
    if st == U.STOPPED:
        return Outcome(row["email"], st.value, "already stopped")
    if not can_move("user", st, U.STOPPED):
        raise UsageError(f"cannot stop {row['email']}: it is {st}")
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.batch == batch, batch_users.c.email == row["email"])
                  .values(status=U.STOPPED, updated_at=utcnow()))
    settle(home, batch)
    return Outcome(row["email"], U.STOPPED.value, "stopped" + (" (its sync is interrupted)" if _running(row) else ""))


def resume_user(home: Home, batch: str, email: str) -> Outcome:
    """Resume one stopped or failed user with its stored credentials (a stopped batch runs again)."""
    b = get_batch(home, batch)
    _refuse_terminal(b, "resume a user")
    row = get_user(home, batch, email)
    st = UserStatus(row["status"])
    if st not in (U.STOPPED, U.FAILED):
        raise UsageError(f"cannot resume {row['email']}: it is {st}", hint="only Stopped and Failed users resume")
    new = user_resume_status(bool(row["ever_synced"]))
    now = utcnow()
    with home.engine.begin() as c:
        c.execute(update(batch_users).where(batch_users.c.batch == batch, batch_users.c.email == row["email"])
                  .values(status=new, next_sync=now, error=None, updated_at=now))
        if b.status in (BatchStatus.STOPPED, BatchStatus.CREATED):
            c.execute(update(batches).where(batches.c.name == batch).values(
                status=BatchStatus.SYNCING, started_at=b.started_at or now))
        else:
            _reopen(c, b)
    settle(home, batch)
    return Outcome(row["email"], new.value, "runs again now")


def remove_user(home: Home, batch: str, email: str) -> Outcome:
    """Take one user out of ``batch`` with its stored password (copied mail and sync state stay)."""
    get_batch(home, batch)
    row = get_user(home, batch, email)
    if _running(row):
        raise UsageError(f"{row['email']} is syncing right now",
                         hint=f"stop it first: `mailtrek batch stop {batch} --user {row['email']}`")
    where = (batch_users.c.batch == batch, batch_users.c.email == row["email"])
    with home.engine.begin() as c:
        if home.engine.dialect.name == "sqlite":
            c.exec_driver_sql("PRAGMA secure_delete=ON")
        c.execute(update(batch_users).where(*where).values(password_enc=None))
        c.execute(batch_users.delete().where(*where))
    settle(home, batch)
    return Outcome(row["email"], "Removed", f"removed from batch {batch}")


def move_user(home: Home, batch: str, email: str, to: str) -> Outcome:
    """Move one user (credentials, counters, history) to batch ``to`` of the same route.

    Both batches must have the same source endpoint and destination, so the sync state
    (kept per route) carries over; ``to`` must not be finished or completing.
    """
    src, dst = get_batch(home, batch), get_batch(home, to)
    if src.name == dst.name:
        raise ConflictError("the user is already in that batch")
    if (src.source_endpoint, src.tenant, src.dest_endpoint) != (dst.source_endpoint, dst.tenant, dst.dest_endpoint):
        raise UsageError(f"batch {to} has another source or destination than {batch}",
                         hint="move users only between batches of the same endpoint and destination")
    if dst.status in TERMINAL_BATCH or dst.status == BatchStatus.COMPLETING:
        raise UsageError(f"cannot move into batch {to}: it is {dst.status}")
    row = get_user(home, batch, email)
    if _running(row):
        raise UsageError(f"{row['email']} is syncing right now",
                         hint=f"stop it first: `mailtrek batch stop {batch} --user {row['email']}`")
    st = UserStatus(row["status"])
    if st in ACTIVE_USER or st == U.COMPLETED:
        st = user_resume_status(bool(row["ever_synced"])) if st != U.COMPLETED else st
    with home.engine.begin() as c:
        taken = c.execute(select(func.count()).select_from(batch_users).where(
            batch_users.c.batch == to, batch_users.c.email == row["email"])).scalar_one()
        if taken:
            raise UsageError(f"batch {to} already has {row['email']}")
        line = c.execute(select(func.max(batch_users.c.line)).where(batch_users.c.batch == to)).scalar_one()
        c.execute(update(batch_users).where(batch_users.c.batch == batch, batch_users.c.email == row["email"])
                  .values(batch=to, status=st, line=(line or 1) + 1, updated_at=utcnow()))
        c.execute(update(user_runs).where(user_runs.c.batch == batch, user_runs.c.email == row["email"])
                  .values(batch=to))
        if st in (U.QUEUED, U.SYNCED):
            _reopen(c, dst)
    settle(home, batch)
    settle(home, to)
    return Outcome(row["email"], st.value, f"moved from batch {batch} to {to}")


# -- export ------------------------------------------------------------------------------------
def failed_users(home: Home, batch: str) -> list[dict[str, Any]]:
    """Return the Failed users of ``batch`` (email, username, error), in CSV order."""
    get_batch(home, batch)
    return [r for r in _rows(home, batch) if r["status"] == U.FAILED]


def export_failed(home: Home, batch: str, *, with_errors: bool = False) -> str:
    """Return the Failed users as a users CSV: fill in the passwords, then ``batch retry --csv``.

    The Password column is left empty (stored passwords are never written out); with
    ``with_errors`` an Error column says what went wrong (``retry --csv`` ignores it); a
    server's words there never run as a spreadsheet formula (the addresses and names are
    the admin's own CSV's, written back as they were so the file re-imports).
    """
    from mailtrek.orchestrate.csvsafe import safe_cell
    from mailtrek.secrets import redact

    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["EmailAddress", "UserName", "Password", *(["Error"] if with_errors else [])])
    for r in failed_users(home, batch):
        w.writerow([r["email"], r["username"], "",
                    *([safe_cell(redact(r["error"] or ""))] if with_errors else [])])
    return out.getvalue()


# -- completion --------------------------------------------------------------------------------
def completion_warnings(home: Home, batch: str) -> list[str]:
    """Return one line per user a completion would leave behind: failed or never synced."""
    out = []
    for r in _rows(home, batch):
        st = UserStatus(r["status"])
        if st == U.FAILED:
            out.append(f"{r['email']}: Failed" + (f" ({r['error']})" if r["error"] else "")
                       + (", never synced" if not r["ever_synced"] else ""))
        elif not r["ever_synced"] and st != U.COMPLETED:
            out.append(f"{r['email']}: {st}, never synced")
    return out


# -- detail ------------------------------------------------------------------------------------
def user_detail(home: Home, batch: str, email: str, *, runs: int = 50) -> dict[str, Any]:
    """Return one user's folders (source count, on the destination, complete) and run history."""
    from mailtrek.orchestrate.batches import user_route
    from mailtrek.orchestrate.home import as_utc
    from mailtrek.state.db import MailboxState

    b = get_batch(home, batch)
    row = get_user(home, batch, email)
    state = MailboxState(home.engine, user_route(b, row["username"], row["email"]))
    on_dest = state.folder_counts()
    states = state.folder_states()
    folders = []
    for path in sorted(set(states) | set(on_dest)):
        fs = states.get(path)
        folders.append({"folder": "/".join(path), "source_messages": fs.src_messages if fs else None,
                        "synced": on_dest.get(path, 0), "complete": bool(fs and fs.complete)})
    with home.engine.connect() as c:
        rows = c.execute(select(user_runs).where(user_runs.c.batch == batch, user_runs.c.email == row["email"])
                         .order_by(user_runs.c.id.desc()).limit(runs)).mappings().all()
    history = []
    for r in rows:
        start, end = as_utc(r["started_at"]), as_utc(r["finished_at"])
        history.append({"phase": r["phase"], "outcome": r["outcome"], "started_at": start.isoformat(),
                        "finished_at": end.isoformat() if end else None,
                        "seconds": round(((end or utcnow()) - start).total_seconds(), 1),
                        "items_copied": r["items_copied"], "bytes_copied": r["bytes_copied"],
                        "error": r["error"]})
    return {"email": row["email"], "status": row["status"], "folders": folders, "history": history}
