"""The planner is pure: exhaustive properties with Hypothesis, plus the named rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrek.model import MessageMeta
from mailtrek.state.db import MessageState
from mailtrek.sync.options import CopyOptions
from mailtrek.sync.planner import limit_items, plan_folder

BASE = datetime(2022, 1, 1, tzinfo=UTC)

metas = st.lists(
    st.tuples(
        st.integers(1, 40),  # fingerprint class (duplicates are common)
        st.integers(1, 5000),  # size
        st.frozensets(st.sampled_from(["\\Seen", "\\Flagged", "$Forwarded", "Work"])),
        st.integers(0, 1000),  # days after BASE
    ),
    max_size=40,
)


def _source(rows: list[tuple[int, int, frozenset[str], int]]) -> list[MessageMeta]:
    return [
        MessageMeta(uid=i + 1, size=size, flags=flags, internaldate=BASE + timedelta(days=d),
                    fingerprint=f"fp{fp}")
        for i, (fp, size, flags, d) in enumerate(rows)
    ]


def _apply(source: list[MessageMeta], plan, recorded: dict[int, MessageState]) -> None:  # type: ignore[no-untyped-def]
    for m in plan.copy:
        recorded[m.uid] = MessageState(m.uid, f"d{m.uid}", m.fingerprint, m.size, m.flags)
    for s, d in plan.adopt:  # the executor brings adopted items' flags in line
        recorded[s.uid] = MessageState(s.uid, str(d.uid), s.fingerprint, s.size, s.flags)
    for uid, ch in plan.flags:
        r = recorded[uid]
        recorded[uid] = MessageState(uid, r.dest_id, r.fingerprint, r.size, ch.flags)


@settings(max_examples=300, deadline=None)
@given(metas, st.integers(0, 40), st.booleans())
def test_apply_then_replan_is_empty(rows, unknown_count, exact) -> None:  # type: ignore[no-untyped-def]
    source = _source(rows)
    # The destination already holds some of the messages that state does not know.
    dest_unknown = [
        MessageMeta(uid=1000 + i, size=m.size, fingerprint=m.fingerprint, flags=frozenset())
        for i, m in enumerate(source[:unknown_count])
    ]
    recorded: dict[int, MessageState] = {}
    opts = CopyOptions(max_size=4000)
    plan = plan_folder(source, recorded, dest_unknown, opts, max_size=4000, exact_mime=exact)
    # Nothing is both copied and adopted; adoption never uses a destination item twice.
    copied = {m.uid for m in plan.copy}
    adopted = {s.uid for s, _ in plan.adopt}
    assert not copied & adopted
    assert len({d.uid for _, d in plan.adopt}) == len(plan.adopt)
    assert all(m.size <= 4000 for m in plan.copy)
    assert all(m.size > 4000 for m, _ in plan.skip)
    assert len(copied) + len(adopted) + len(plan.skip) == len(source)
    _apply(source, plan, recorded)
    again = plan_folder(source, recorded, [], opts, max_size=4000, exact_mime=exact)
    assert again.copy == [] or all(m.size > 4000 for m in again.copy)
    assert again.adopt == [] and again.flags == []
    assert again.already == len(copied) + len(adopted)


def test_duplicates_are_counted_not_collapsed() -> None:
    src = _source([(1, 10, frozenset(), 0), (1, 10, frozenset(), 0), (1, 10, frozenset(), 0)])
    dest = [MessageMeta(uid=7, size=10, fingerprint="fp1")]
    plan = plan_folder(src, {}, dest, CopyOptions(), max_size=None, exact_mime=True)
    assert len(plan.adopt) == 1 and len(plan.copy) == 2


def test_size_counts_only_for_exact_destinations() -> None:
    src = _source([(1, 10, frozenset(), 0)])
    dest = [MessageMeta(uid=7, size=99, fingerprint="fp1")]
    assert len(plan_folder(src, {}, dest, CopyOptions(), max_size=None, exact_mime=True).copy) == 1
    assert len(plan_folder(src, {}, dest, CopyOptions(), max_size=None, exact_mime=False).adopt) == 1


def test_flag_changes_and_date_filter() -> None:
    src = _source([(1, 10, frozenset({"\\Seen", "Work"}), 0), (2, 10, frozenset(), 400)])
    rec = {1: MessageState(1, "5", "fp1", 10, frozenset({"\\Seen"}))}
    opts = CopyOptions(since=BASE + timedelta(days=-1), before=BASE + timedelta(days=10))
    plan = plan_folder(src, rec, [], opts, max_size=None, exact_mime=True)
    assert plan.selected == 1 and plan.copy == []
    assert [(u, c.dest_id, c.flags) for u, c in plan.flags] == [
        (1, "5", frozenset({"\\Seen", "Work"}))]


def test_in_doubt_rows_are_not_taken_as_done() -> None:
    src = _source([(1, 10, frozenset(), 0)])
    rec = {1: MessageState(1, None, "fp1", 10, frozenset(), status="in_doubt")}
    plan = plan_folder(src, rec, [], CopyOptions(), max_size=None, exact_mime=True)
    assert [m.uid for m in plan.copy] == [1]


def test_item_limit_keeps_newest() -> None:
    src = _source([(i, 10, frozenset(), i) for i in range(10)])
    plan = plan_folder(src, {}, [], CopyOptions(), max_size=None, exact_mime=True)
    limit_items([plan], max_items=5, recorded_total=2)
    assert sorted(m.uid for m in plan.copy) == [8, 9, 10]
    assert len(plan.skip) == 7 and "items per mailbox" in plan.skip[0][1]
