"""The pure rules of verify's pairing (``sync.verify_match``) and placeholder folders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailtrek.model import FolderInfo
from mailtrek.state.db import MessageState
from mailtrek.stores.base import StoreFeatures
from mailtrek.sync.mapping import map_folders, placeholder_mappings
from mailtrek.sync.verify_match import Item, match_folder

T = datetime(2024, 1, 1, tzinfo=UTC)
IMAP = StoreFeatures(kind="imap")
# What Graph declares about dates (stores.m365.graph): +-2 s, both ends; header dates.
GRAPH = StoreFeatures(kind="graph", date_tolerance_s=2.000001, dates_from_headers=True)
SEEN, FLAGGED = frozenset({"\\Seen"}), frozenset({"\\Flagged"})


def item(uid: int, digest: str, flags: frozenset[str], date: datetime, **kw: object) -> Item:
    return Item(uid, digest, "fp-" + digest, flags, date, 100, **kw)  # type: ignore[arg-type]


def test_twins_are_paired_so_flags_and_dates_agree() -> None:
    src = [item(1, "d", SEEN, T), item(2, "d", FLAGGED, T + timedelta(hours=1))]
    dst = [item(10, "d", FLAGGED, T + timedelta(hours=1), dest_key="10"),
           item(11, "d", SEEN, T, dest_key="11")]
    res = match_folder("F", src, dst, exact=True, features=IMAP)
    assert (res["matched"], res["different"], res["missing"], res["extra"]) == (2, 0, 0, 0)
    # State recorded them the wrong way round (an earlier adoption): swapped, not different.
    wrong = {1: MessageState(1, "10", None, 100, SEEN), 2: MessageState(2, "11", None, 100, FLAGGED)}
    res = match_folder("F", src, dst, exact=True, features=IMAP, recorded=wrong)
    assert (res["matched_by_state"], res["different"]) == (2, 0)


def test_state_pairs_first_and_a_gone_item_is_missing_even_with_a_twin_left() -> None:
    src = [item(1, "d", SEEN, T), item(2, "d", SEEN, T)]
    dst = [item(10, "d", SEEN, T, dest_key="10")]
    rec = {1: MessageState(1, "10", None, 100, SEEN), 2: MessageState(2, "99", None, 100, SEEN)}
    res = match_folder("F", src, dst, exact=True, features=IMAP, recorded=rec)
    assert (res["matched"], res["matched_by_state"], res["missing"]) == (1, 1, 1)
    assert [p["uid"] for p in res["problems"]] == [2]


def test_graph_dates_tolerance_and_dates_from_headers() -> None:
    headers = T - timedelta(minutes=5)
    s = [Item(1, None, "a", SEEN, T, 100, header_date=headers),
         Item(2, None, "b", SEEN, T, 100, header_date=headers),
         Item(3, None, "c", SEEN, T, 100, header_date=None),
         Item(4, None, "e", SEEN, T, 100, header_date=headers)]
    d = [Item(9, None, "a", SEEN, T + timedelta(seconds=2), 0),
         Item(8, None, "b", SEEN, headers, 0),
         Item(7, None, "c", SEEN, T + timedelta(days=1), 0),
         Item(6, None, "e", SEEN, T + timedelta(days=1), 0)]
    res = match_folder("F", s, d, exact=False, features=GRAPH)
    assert (res["dates_from_headers"], res["dates_not_kept"], res["different"]) == (1, 1, 1)
    [diff] = [p for p in res["problems"] if p["kind"] == "different"]
    assert diff["uid"] == 4 and diff["detail"].startswith("date")


def test_a_childless_noselect_folder_is_mapped_a_parent_is_not() -> None:
    folders = [FolderInfo(("INBOX",)), FolderInfo(("Parent",), selectable=False),
               FolderInfo(("Parent", "Child")), FolderInfo(("Lonely",), selectable=False)]
    feats = IMAP
    maps = map_folders(folders, feats)
    extra = placeholder_mappings(folders, maps, [], feats)
    assert [m.dest_path for m in extra] == [("Lonely",)]
    assert placeholder_mappings(folders, maps, [FolderInfo(("Lonely",))], feats) == []


def test_a_rewritten_copy_pairs_only_after_the_exact_ones_and_is_changed_not_different() -> None:
    # Source 1 has 8-bit header bytes; the server stored it as "x" (one of its forms), and
    # an exact copy of source 2 happens to hold those very bytes too.
    src = [item(1, "raw8", SEEN, T, rewrites=(("x", "8-bit header bytes replaced"),)),
           item(2, "x", SEEN, T)]
    dst = [item(10, "x", SEEN, T, dest_key="10")]
    res = match_folder("F", src, dst, exact=True, features=IMAP)
    assert (res["matched"], res["missing"], res["changed_by_server"]) == (1, 1, 0)
    assert [(p["kind"], p["uid"]) for p in res["problems"]] == [("missing", 1)]
    dst.append(item(11, "x", FLAGGED, T, dest_key="11"))
    res = match_folder("F", src, dst, exact=True, features=IMAP)
    assert (res["matched"], res["different"], res["changed_by_server"]) == (2, 1, 1)
    got = sorted((p["kind"], p["uid"], p["detail"]) for p in res["problems"])
    assert [(k, u) for k, u, _ in got] == [("changed", 1), ("different", 1)]
    assert got[0][2] == "changed by the server (8-bit header bytes replaced)"
    assert got[1][2].startswith("flags")  # the rewrite itself is no difference
    # Paired by state too (the copy recorded for it holds the rewrite).
    rec = {1: MessageState(1, "11", None, 100, SEEN), 2: MessageState(2, "10", None, 100, SEEN)}
    res = match_folder("F", src, dst, exact=True, features=IMAP, recorded=rec)
    assert (res["matched_by_state"], res["changed_by_server"]) == (2, 1)


def test_a_copy_with_the_loose_fingerprint_but_other_bytes_is_different() -> None:
    src = [Item(1, "raw8", "fp-8bit", SEEN, T, 100, rewrites=(("munged", "8-bit"),),
                loose_fp="fp-X")]
    dst = [Item(10, "edited", "fp-X", SEEN, T, 100, dest_key="10")]
    res = match_folder("F", src, dst, exact=True, features=IMAP)
    assert (res["different"], res["missing"], res["extra"]) == (1, 0, 0), res["problems"]
