"""The pure parts of the Gmail source: label strategies and the download budget."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from imapclient import imap_utf7

from mailtrek.model import FolderInfo, SpecialUse
from mailtrek.stores.gmail.labels import (
    _NOT_ATOM,
    Member,
    Role,
    Strategy,
    label_keyword,
    looks_like_gmail,
    plan_view,
    role_of,
)
from mailtrek.stores.gmail.pacing import DownloadBudget, cut_to_budget

F = {
    "inbox": FolderInfo(("INBOX",), SpecialUse.INBOX, uidvalidity=1),
    "all": FolderInfo(("[Gmail]", "All Mail"), SpecialUse.ALL, uidvalidity=2),
    "sent": FolderInfo(("[Gmail]", "Sent Mail"), SpecialUse.SENT, uidvalidity=3),
    "drafts": FolderInfo(("[Gmail]", "Drafts"), None, uidvalidity=4),  # by name only
    "trash": FolderInfo(("[Gmail]", "Bin"), None, uidvalidity=5),
    "spam": FolderInfo(("[Gmail]", "Spam"), SpecialUse.JUNK, uidvalidity=6),
    "starred": FolderInfo(("[Gmail]", "Starred"), SpecialUse.FLAGGED, uidvalidity=7),
    "important": FolderInfo(("[Gmail]", "Important"), None, uidvalidity=8),
    "work": FolderInfo(("Work",), uidvalidity=9),
    "alpha": FolderInfo(("Work", "Alpha"), uidvalidity=10),
    "zeta": FolderInfo(("Zeta",), uidvalidity=11),
}
GMAIL_ROOT = FolderInfo(("[Gmail]",), selectable=False)
FOLDERS = [*F.values(), GMAIL_ROOT]
LABELS = ("inbox", "sent", "drafts", "work", "alpha", "zeta")


def test_roles_by_special_use_and_by_gmail_name() -> None:
    assert [role_of(F[k]) for k in F] == [
        Role.INBOX, Role.ALL, Role.SENT, Role.DRAFTS, Role.TRASH, Role.SPAM, Role.STARRED,
        Role.IMPORTANT, Role.LABEL, Role.LABEL, Role.LABEL]
    assert role_of(FolderInfo(("[Google Mail]", "All Mail"))) == Role.ALL
    assert role_of(FolderInfo(("Archive", "All Mail"))) == Role.LABEL
    assert looks_like_gmail(FOLDERS)
    assert not looks_like_gmail([F["inbox"], F["work"]])
    assert not looks_like_gmail([FolderInfo(("[Gmail]", "All Mail"), selectable=False)])


def test_label_keywords_stay_readable_or_become_imap_atoms() -> None:
    assert label_keyword("Work Stuff/Q1") == "Work Stuff/Q1"
    assert label_keyword("Work/Q1", imap_safe=True) == "Work/Q1"
    assert label_keyword("", imap_safe=True) == "_"
    # Reversible (modified UTF-7 with specials encoded too): distinct labels stay apart.
    for label in ("Work Stuff/Q1", 'Pläne (alt) "x"', "Клиенты", "Партнёр", "A&B", "100%*"):
        keyword = label_keyword(label, imap_safe=True)
        assert not _NOT_ATOM.search(keyword) and keyword.isascii()
        assert imap_utf7.decode(keyword.encode()) == label
    assert label_keyword("Клиенты", imap_safe=True) != label_keyword("Партнёр", imap_safe=True)


# A message: the set of label folders holding it, archived-ness, trash/spam, marks.
message = st.fixed_dictionaries({
    "labels": st.sets(st.sampled_from(LABELS), max_size=4),
    "in_all": st.booleans(),
    "bin": st.sampled_from([None, "trash", "spam"]),
    "starred": st.booleans(),
    "important": st.booleans(),
})


def layout(msgs: list[dict]) -> dict[tuple[str, ...], list[Member]]:  # type: ignore[type-arg]
    members: dict[tuple[str, ...], list[Member]] = {f.path: [] for f in F.values()}
    for i, m in enumerate(msgs):
        where = set(m["labels"])
        if m["bin"]:
            where = {m["bin"]}  # Gmail: trashed mail leaves every other label
        else:
            if m["in_all"] or where:
                where.add("all")
            if m["starred"]:
                where.add("starred")
            if m["important"]:
                where.add("important")
        for k in where:
            # UIDs differ per folder, as on a real server
            members[F[k].path].append(Member(uid=100 * (F[k].uidvalidity or 0) + i, key=i))
    return members


def presented(view, key_of):  # type: ignore[no-untyped-def]
    out = []
    for path, fv in view.folders.items():
        for uid in fv.uids:
            out.append((path, key_of[(path, uid)], fv.extra.get(uid, frozenset())))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=12), st.sampled_from(list(Strategy)))
def test_every_strategy_copies_each_message_the_right_number_of_times(msgs, strategy) -> None:  # type: ignore[no-untyped-def]
    members = layout(msgs)
    key_of = {(p, m.uid): m.key for p, ms in members.items() for m in ms}
    view = plan_view(FOLDERS, members, strategy)
    shown = presented(view, key_of)
    # Important and Starred are never folders; nothing is presented twice in one folder.
    assert not {p for p, _, _ in shown} & {F["starred"].path, F["important"].path}
    assert len({(p, k) for p, k, _ in shown}) == len(shown)
    for i, m in enumerate(msgs):
        mine = [(p, extra) for p, k, extra in shown if k == i]
        paths = [p for p, _ in mine]
        if m["bin"]:  # Trash and Spam are kept as they are, in every strategy
            assert paths == [F[m["bin"]].path]
        elif strategy == Strategy.ALL_MAIL:
            assert paths == ([F["all"].path] if m["in_all"] or m["labels"] else [])
        elif not m["labels"]:
            assert paths == ([F["all"].path] if m["in_all"] else [])
            if m["in_all"]:
                assert view.folders[F["all"].path].info.special_use == SpecialUse.ARCHIVE
        elif strategy == Strategy.FOLDERS:
            assert sorted(paths) == sorted(F[k].path for k in m["labels"])
        else:
            assert len(paths) == 1
            home = paths[0]
            rank = [F[k].path for k in ("inbox", "sent", "drafts", "alpha", "work", "zeta")]
            assert home == next(p for p in rank if p in {F[k].path for k in m["labels"]})
            users = {"/".join(F[k].path) for k in m["labels"] if k in ("work", "alpha", "zeta")}
            assert {x for x in mine[0][1] if x[0] != "\\" and x != "Important"} == (
                users - {"/".join(home)})
        for _, extra in mine:
            if not m["bin"]:
                assert ("\\Flagged" in extra) == m["starred"]
                assert ("Important" in extra) == m["important"]
    # Stable: the same mailbox listed in another order gives the same view.
    again = plan_view(list(reversed(FOLDERS)), {p: list(reversed(ms)) for p, ms in members.items()},
                      strategy)
    assert {p: (v.uids, v.extra, v.info) for p, v in again.folders.items()} == {
        p: (v.uids, v.extra, v.info) for p, v in view.folders.items()}


def test_all_mail_strategy_keeps_every_label_as_keyword() -> None:
    members = layout([{"labels": {"inbox", "sent", "alpha"}, "in_all": True, "bin": None,
                       "starred": True, "important": True}])
    view = plan_view(FOLDERS, members, Strategy.ALL_MAIL)
    [(_uid, extra)] = view.folders[F["all"].path].extra.items()
    assert extra == {"Inbox", "Sent", "Work/Alpha", "Important", "\\Flagged"}


def test_hidden_labels_from_x_gm_labels_become_keywords() -> None:
    members = {F["inbox"].path: [Member(1, "m1")], F["all"].path: [Member(7, "m1"), Member(8, "m2")]}
    gm = {"m1": frozenset({"\\Inbox", "Hidden Label", "\\Starred"}), "m2": frozenset({"Other"})}
    view = plan_view(FOLDERS, members, Strategy.FOLDERS_CATEGORIES, gm_labels=gm, imap_safe=True)
    assert view.folders[F["inbox"].path].extra == {1: frozenset({"Hidden&ACA-Label", "\\Flagged"})}
    archive = view.folders[F["all"].path]
    assert archive.uids == {8} and archive.extra == {8: frozenset({"Other"})}


def test_budget_rolls_over_24_hours_with_a_simulated_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    b = DownloadBudget(limit=1000, clock=lambda: now[0], ledger=tmp_path / "l.json")
    assert b.remaining() == 1000
    b.record(600)
    now[0] += 3600
    b.record(300)
    assert b.remaining() == 100
    assert b.available_at(50) == datetime.fromtimestamp(now[0], UTC)
    assert b.available_at(500) == datetime.fromtimestamp(1_000_000 + 86400, UTC)
    assert b.available_at(800) == datetime.fromtimestamp(1_003_600 + 86400, UTC)
    # Another process reads the same ledger.
    b2 = DownloadBudget(limit=1000, clock=lambda: now[0], ledger=tmp_path / "l.json")
    assert b2.used() == 900
    now[0] = 1_000_000 + 86400 + 1
    assert b2.remaining() == 700
    now[0] += 3600
    assert b2.remaining() == 1000
    (tmp_path / "bad.json").write_text("{not json")
    assert DownloadBudget(limit=5, ledger=tmp_path / "bad.json").remaining() == 5
    assert json.loads((tmp_path / "l.json").read_text())


def test_cut_to_budget_is_newest_first_and_stops_at_the_first_misfit() -> None:
    d = [datetime(2024, 1, n, tzinfo=UTC) for n in range(1, 6)]
    items = [("a", 10, d[0]), ("b", 30, d[4]), ("c", 50, d[2]), ("d", 5, d[1]), ("e", 1, None)]
    kept, deferred = cut_to_budget(items, 84)
    assert kept == {"b", "c"} and [x[0] for x in deferred] == ["d", "a", "e"]
    assert cut_to_budget(items, 85)[0] == {"b", "c", "d"}
    assert cut_to_budget(items, 10_000)[1] == []
    assert cut_to_budget([], 0) == (set(), [])
