"""The batch and per-user state machines (pure: no I/O, exhaustively tested).

Statuses follow Exchange Online's IMAP migration (m365.md C3), trimmed to the ones a
self-hosted runner actually passes through.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from mailtrek.errors import UsageError


class BatchStatus(enum.StrEnum):
    CREATED = "Created"
    SYNCING = "Syncing"
    SYNCED = "Synced"
    SYNCED_WITH_ERRORS = "SyncedWithErrors"
    STOPPED = "Stopped"
    FAILED = "Failed"
    COMPLETING = "Completing"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "CompletedWithErrors"


class UserStatus(enum.StrEnum):
    QUEUED = "Queued"
    SYNCING = "Syncing"
    SYNCED = "Synced"
    INCREMENTAL_SYNCING = "IncrementalSyncing"
    STOPPED = "Stopped"
    FAILED = "Failed"
    COMPLETING = "Completing"
    COMPLETED = "Completed"


B, U = BatchStatus, UserStatus

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    B.CREATED: frozenset({B.SYNCING, B.STOPPED}),
    B.SYNCING: frozenset({B.SYNCED, B.SYNCED_WITH_ERRORS, B.FAILED, B.STOPPED}),
    # An incremental round or a retry of failed users goes back through Syncing.
    B.SYNCED: frozenset({B.SYNCING, B.SYNCED_WITH_ERRORS, B.FAILED, B.STOPPED, B.COMPLETING}),
    B.SYNCED_WITH_ERRORS: frozenset({B.SYNCING, B.SYNCED, B.FAILED, B.STOPPED, B.COMPLETING}),
    B.STOPPED: frozenset({B.SYNCING}),
    B.FAILED: frozenset({B.SYNCING, B.SYNCED, B.SYNCED_WITH_ERRORS, B.STOPPED}),
    B.COMPLETING: frozenset({B.COMPLETED, B.COMPLETED_WITH_ERRORS, B.STOPPED}),
    B.COMPLETED: frozenset(),
    B.COMPLETED_WITH_ERRORS: frozenset(),
}

USER_TRANSITIONS: dict[UserStatus, frozenset[UserStatus]] = {
    U.QUEUED: frozenset({U.SYNCING, U.STOPPED}),
    U.SYNCING: frozenset({U.SYNCED, U.FAILED, U.STOPPED, U.QUEUED}),  # QUEUED: interrupted
    U.SYNCED: frozenset({U.INCREMENTAL_SYNCING, U.COMPLETING, U.STOPPED}),
    U.INCREMENTAL_SYNCING: frozenset({U.SYNCED, U.FAILED, U.STOPPED}),
    U.STOPPED: frozenset({U.QUEUED, U.SYNCED}),  # resume: initial again, or keep syncing
    U.FAILED: frozenset({U.QUEUED, U.SYNCED, U.STOPPED}),  # resume retries it
    U.COMPLETING: frozenset({U.COMPLETED, U.FAILED, U.SYNCED, U.STOPPED}),
    U.COMPLETED: frozenset(),
}

ACTIVE_USER = frozenset({U.SYNCING, U.INCREMENTAL_SYNCING, U.COMPLETING})
TERMINAL_BATCH = frozenset({B.COMPLETED, B.COMPLETED_WITH_ERRORS})


class TransitionError(UsageError):
    """A command asked for a status change the state machine does not allow."""


def can_move(kind: str, old: str, new: str) -> bool:
    """Return whether ``old`` -> ``new`` is allowed for ``kind`` "batch" or "user"."""
    if kind == "batch":
        return BatchStatus(new) in BATCH_TRANSITIONS[BatchStatus(old)]
    return UserStatus(new) in USER_TRANSITIONS[UserStatus(old)]


def check_batch_move(old: str, new: str, action: str) -> BatchStatus:
    """Return ``new`` as BatchStatus, or raise TransitionError explaining why not."""
    if old == new:
        return BatchStatus(new)
    if not can_move("batch", old, new):
        raise TransitionError(
            f"cannot {action} a batch that is {old}",
            hint=_hint(BatchStatus(old)),
        )
    return BatchStatus(new)


def _hint(old: BatchStatus) -> str:
    if old in TERMINAL_BATCH:
        return "the batch is finished; create a new batch to migrate again"
    nexts = sorted(BATCH_TRANSITIONS[old])
    return f"from {old} a batch can become {', '.join(nexts)}"


def settle_batch(current: BatchStatus, users: Iterable[UserStatus]) -> BatchStatus:
    """Return the batch status the users' statuses add up to.

    Called after every user change; Stopped and Created are only changed by commands.
    """
    users = list(users)
    if current in (B.CREATED, B.STOPPED) or current in TERMINAL_BATCH:
        return current
    if not users:
        return current
    if current == B.COMPLETING:
        if any(u in (U.COMPLETING, U.SYNCED, U.INCREMENTAL_SYNCING, U.SYNCING, U.QUEUED) for u in users):
            return B.COMPLETING
        return B.COMPLETED if all(u == U.COMPLETED for u in users) else B.COMPLETED_WITH_ERRORS
    if any(u in (U.QUEUED, U.SYNCING) for u in users):
        return B.SYNCING
    if all(u == U.FAILED for u in users):
        return B.FAILED
    if any(u in (U.FAILED, U.STOPPED) for u in users):
        return B.SYNCED_WITH_ERRORS
    return B.SYNCED


def user_resume_status(ever_synced: bool) -> UserStatus:
    """Return where a stopped or failed user goes on resume."""
    return U.SYNCED if ever_synced else U.QUEUED
