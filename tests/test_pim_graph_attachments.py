"""Event attachments from Radicale into Microsoft 365 (the simulator): an inline ATTACH
becomes a fileAttachment once (re-runs, a lost state and a changed event add none), one
of 3 MB or more goes through an upload session, a link is kept in the body and listed, and
one over Graph's 150 MB is listed with its reason."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from mailtrek.devtools.dav_load import Loader
from mailtrek.pim.graph_map import event_to_graph
from mailtrek.pim.memory import MemoryPimStore
from mailtrek.pim.model import KINDS
from mailtrek.pim.sync import copy_pim
from mailtrek.pim.verify import verify_pim
from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.state.db import open_engine
from mailtrek.state.pim import PimState
from mailtrek.stores.m365.pim_store import PROP_UID
from pim_graph_helpers import graph_store
from pim_helpers import store, vcalendar, vevent

UPN = "files@contoso.test"
BIG_UPN = "big@contoso.test"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64
BIG = bytes(3 * 1024 * 1024 + 10)


def _inline(content: bytes, name: str, mime: str) -> str:
    return (f"ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE={mime};X-FILENAME={name}:"
            + base64.b64encode(content).decode())


EVENTS = {
    "agenda": vcalendar(vevent("agenda@t", "Board meeting", ":20240902T090000Z",
                               ":20240902T100000Z", _inline(PDF, "agenda.pdf",
                                                            "application/pdf"))),
    "link": vcalendar(vevent("link@t", "Review", ":20240903T090000Z", ":20240903T100000Z",
                             "ATTACH;FMTTYPE=application/pdf:https://files.example.org/r.pdf",
                             "DESCRIPTION:Bring the draft")),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(users=[UserSpec(UPN), UserSpec(BIG_UPN)])) as running:
        yield running


@pytest.fixture(scope="module")
def source(radicale):  # type: ignore[no-untyped-def]
    user, password = "files-src", "pw-files-src"
    radicale.add_user(user, password)
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        cal = load.make_collection("Meetings", "calendar")
        for name, body in EVENTS.items():
            assert load.put(cal, f"{name}.ics", body, "calendar").status_code in (200, 201)
    return user, password, cal


def _event(sim: Simulator, uid: str):  # type: ignore[no-untyped-def]
    [found] = [e for e in sim.events(UPN) if e.ext.get(PROP_UID) == uid]
    return found


async def test_event_attachments_once_rerun_adopt_verify(radicale, source,  # type: ignore[no-untyped-def]
                                                         sim: Simulator, tmp_path) -> None:
    user, password, cal = source
    src, dst = store(radicale, user, password), graph_store(sim, UPN)
    await src.connect()
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "s.db"), "files")
        report = await copy_pim(src, dst, state, KINDS)
        t = report.totals()
        assert (t["copied"], t["failed"]) == (2, 0), report
        [att] = _event(sim, "agenda@t").attachments
        assert (att["name"], att["contentType"], att["content"]) == (
            "agenda.pdf", "application/pdf", PDF)
        link = _event(sim, "link@t")
        assert link.attachments == []
        assert "Bring the draft" in link.props["body"]["content"]
        assert "https://files.example.org/r.pdf" in link.props["body"]["content"]
        notes = {c.uid: c.notes for e in report.collections for c in e.changed}
        assert any("kept as a link" in x for x in notes["link@t"]), notes
        assert not notes.get("agenda@t"), notes

        again = (await copy_pim(src, dst, state, KINDS)).totals()
        assert (again["copied"], again["skipped"]) == (0, 2)
        lost = (await copy_pim(src, dst, PimState(open_engine(tmp_path / "lost.db"), "files"),
                               KINDS)).totals()
        assert (lost["copied"], lost["adopted"]) == (0, 2), lost
        assert len(_event(sim, "agenda@t").attachments) == 1

        # A changed event is written over; its attachment is not added twice.
        with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
            r = load.put(cal, "agenda.ics", EVENTS["agenda"].replace(b"Board meeting",
                                                                      b"Board meeting (moved)"),
                         "calendar")
            assert r.status_code in (200, 201, 204)
        src._collections = None  # see the changed sync token
        t2 = (await copy_pim(src, dst, state, KINDS)).totals()
        assert (t2["copied"], t2["updated"]) == (1, 1), t2
        agenda = _event(sim, "agenda@t")
        assert agenda.props["subject"] == "Board meeting (moved)"
        assert [a["name"] for a in agenda.attachments] == ["agenda.pdf"]

        v = await verify_pim(src, dst, KINDS)
        assert v["ok"] and v["totals"]["matched"] == 2, v["problems"]
        assert sim.outbox() == []
    finally:
        await src.close()
        await dst.close()


async def test_a_file_of_3_mb_or_more_goes_through_an_upload_session_once(
        sim: Simulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Graph adds files "under 3 MB" with one POST; a bigger one through an upload session
    (ranges to the Outlook host), once: a re-run and a lost state add none."""
    src, dst = MemoryPimStore(), graph_store(sim, BIG_UPN)
    cal = src.add_collection("/c/", "calendar", "Videos")
    src.add(cal.href, "big.ics", vcalendar(vevent(
        "big@t", "Video review", ":20240904T090000Z", ":20240904T100000Z",
        _inline(BIG, "clip.mp4", "video/mp4"), _inline(b"notes", "n.txt", "text/plain"))))
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "s.db"), "big")
        report = await copy_pim(src, dst, state, KINDS)
        assert report.totals()["copied"] == 1 and report.totals()["failed"] == 0, report
        [event] = sim.events(BIG_UPN)
        assert sorted((a["name"], a["size"]) for a in event.attachments) == [
            ("clip.mp4", len(BIG)), ("n.txt", 5)]
        assert next(a for a in event.attachments if a["name"] == "clip.mp4")["content"] == BIG
        lost = (await copy_pim(src, dst, PimState(open_engine(tmp_path / "l.db"), "big"),
                               KINDS)).totals()
        assert lost["adopted"] == 1, lost
        assert len(sim.events(BIG_UPN)[0].attachments) == 2
    finally:
        await dst.close()


def test_a_file_over_150_mb_is_listed_with_its_reason(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Graph attaches up to 150 MB to an event; a bigger file is not sent, but reported
    (the limit shrunk here, so the test need not build 150 MB)."""
    from mailtrek.pim import graph_map

    monkeypatch.setattr(graph_map, "MAX_EVENT_FILE", 1000)
    ge = event_to_graph(vcalendar(vevent("big@t", "Video review", ":20240904T090000Z",
                                         ":20240904T100000Z", _inline(bytes(1001), "clip.mp4",
                                                                      "video/mp4"),
                                         _inline(b"notes", "n.txt", "text/plain"))))
    assert [(f.name, f.content) for f in ge.files] == [("n.txt", b"notes")]
    assert any("clip.mp4" in x and "150 MB" in x for x in ge.lost), ge.lost
