"""The batch and user state machines: every transition checked, and settle never breaks them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailtrek.orchestrate.states import (
    BATCH_TRANSITIONS,
    USER_TRANSITIONS,
    BatchStatus,
    TransitionError,
    UserStatus,
    can_move,
    check_batch_move,
    settle_batch,
    user_resume_status,
)

B, U = BatchStatus, UserStatus

ALLOWED_BATCH = {
    (B.CREATED, B.SYNCING), (B.CREATED, B.STOPPED),
    (B.SYNCING, B.SYNCED), (B.SYNCING, B.SYNCED_WITH_ERRORS), (B.SYNCING, B.FAILED), (B.SYNCING, B.STOPPED),
    (B.SYNCED, B.SYNCING), (B.SYNCED, B.SYNCED_WITH_ERRORS), (B.SYNCED, B.FAILED), (B.SYNCED, B.STOPPED),
    (B.SYNCED, B.COMPLETING),
    (B.SYNCED_WITH_ERRORS, B.SYNCING), (B.SYNCED_WITH_ERRORS, B.SYNCED), (B.SYNCED_WITH_ERRORS, B.FAILED),
    (B.SYNCED_WITH_ERRORS, B.STOPPED), (B.SYNCED_WITH_ERRORS, B.COMPLETING),
    (B.STOPPED, B.SYNCING),
    (B.FAILED, B.SYNCING), (B.FAILED, B.SYNCED), (B.FAILED, B.SYNCED_WITH_ERRORS), (B.FAILED, B.STOPPED),
    (B.COMPLETING, B.COMPLETED), (B.COMPLETING, B.COMPLETED_WITH_ERRORS), (B.COMPLETING, B.STOPPED),
}

ALLOWED_USER = {
    (U.QUEUED, U.SYNCING), (U.QUEUED, U.STOPPED),
    (U.SYNCING, U.SYNCED), (U.SYNCING, U.FAILED), (U.SYNCING, U.STOPPED), (U.SYNCING, U.QUEUED),
    (U.SYNCED, U.INCREMENTAL_SYNCING), (U.SYNCED, U.COMPLETING), (U.SYNCED, U.STOPPED),
    (U.INCREMENTAL_SYNCING, U.SYNCED), (U.INCREMENTAL_SYNCING, U.FAILED), (U.INCREMENTAL_SYNCING, U.STOPPED),
    (U.STOPPED, U.QUEUED), (U.STOPPED, U.SYNCED),
    (U.FAILED, U.QUEUED), (U.FAILED, U.SYNCED), (U.FAILED, U.STOPPED),
    (U.COMPLETING, U.COMPLETED), (U.COMPLETING, U.FAILED), (U.COMPLETING, U.SYNCED), (U.COMPLETING, U.STOPPED),
}


def test_statuses_are_exchanges_names():
    assert [s.value for s in B] == ["Created", "Syncing", "Synced", "SyncedWithErrors", "Stopped", "Failed",
                                    "Completing", "Completed", "CompletedWithErrors"]
    assert [s.value for s in U] == ["Queued", "Syncing", "Synced", "IncrementalSyncing", "Stopped", "Failed",
                                    "Completing", "Completed"]


@pytest.mark.parametrize(("old", "new"), list(itertools.product(B, B)))
def test_every_batch_pair(old, new):
    assert can_move("batch", old, new) == ((old, new) in ALLOWED_BATCH)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(U, U)))
def test_every_user_pair(old, new):
    assert can_move("user", old, new) == ((old, new) in ALLOWED_USER)


def test_tables_cover_every_status():
    assert set(BATCH_TRANSITIONS) == set(B) and set(USER_TRANSITIONS) == set(U)


def test_completed_is_final_and_explains():
    for final in (B.COMPLETED, B.COMPLETED_WITH_ERRORS):
        with pytest.raises(TransitionError) as e:
            check_batch_move(final, B.SYNCING, "resume")
        assert "create a new batch" in str(e.value)
    with pytest.raises(TransitionError) as e:
        check_batch_move(B.CREATED, B.COMPLETING, "complete")
    assert "cannot complete a batch that is Created" in str(e.value)


def test_same_status_is_a_no_op():
    assert check_batch_move(B.STOPPED, B.STOPPED, "stop") == B.STOPPED


@pytest.mark.parametrize(
    ("current", "users", "expected"),
    [
        (B.SYNCING, [U.QUEUED, U.SYNCED], B.SYNCING),
        (B.SYNCING, [U.SYNCING, U.SYNCED], B.SYNCING),
        (B.SYNCING, [U.SYNCED, U.SYNCED], B.SYNCED),
        (B.SYNCING, [U.SYNCED, U.FAILED], B.SYNCED_WITH_ERRORS),
        (B.SYNCING, [U.FAILED, U.FAILED], B.FAILED),
        (B.SYNCED, [U.INCREMENTAL_SYNCING, U.SYNCED], B.SYNCED),
        (B.SYNCED, [U.FAILED, U.SYNCED], B.SYNCED_WITH_ERRORS),
        (B.SYNCED_WITH_ERRORS, [U.SYNCED, U.SYNCED], B.SYNCED),
        (B.COMPLETING, [U.COMPLETING, U.COMPLETED], B.COMPLETING),
        (B.COMPLETING, [U.SYNCED, U.COMPLETED], B.COMPLETING),
        (B.COMPLETING, [U.COMPLETED, U.COMPLETED], B.COMPLETED),
        (B.COMPLETING, [U.COMPLETED, U.FAILED], B.COMPLETED_WITH_ERRORS),
        (B.STOPPED, [U.SYNCED], B.STOPPED),
        (B.CREATED, [U.QUEUED], B.CREATED),
        (B.COMPLETED, [U.FAILED], B.COMPLETED),
    ],
)
def test_settle(current, users, expected):
    assert settle_batch(current, users) == expected


@given(st.sampled_from(list(B)), st.lists(st.sampled_from(list(U)), max_size=6))
def test_settle_only_makes_allowed_moves(current, users):
    new = settle_batch(current, users)
    assert new == current or can_move("batch", current, new)


def test_resume_goes_back_to_queue_or_synced():
    assert user_resume_status(False) == U.QUEUED
    assert user_resume_status(True) == U.SYNCED
    for old in (U.STOPPED, U.FAILED):
        for ever in (True, False):
            assert can_move("user", old, user_resume_status(ever))
