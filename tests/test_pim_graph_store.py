"""Contacts and calendars into Microsoft 365 (the simulator) through the Graph PIM store:
generated edge cases (DST, exceptions, a 500-instance series, non-ASCII, a photo, a
meeting with attendees), once, re-runnable, adoptable, verified, and nobody invited."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from mailtrek.pim.fields import read_object
from mailtrek.pim.memory import MemoryPimStore
from mailtrek.pim.model import KINDS
from mailtrek.pim.sync import copy_pim
from mailtrek.pim.verify import verify_pim
from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.sim.testing import graph_client
from mailtrek.state.db import open_engine
from mailtrek.state.pim import PimState
from mailtrek.stores.m365.pim_store import PROP_PEOPLE, PROP_UID
from pim_graph_helpers import graph_store, occurrences, same_except_rrule
from pim_helpers import BERLIN, vcalendar, vcard, vevent

UPN = "alice@contoso.test"
PHOTO = bytes(range(256)) * 40
MEETING = vcalendar(vevent(
    "meet@t", "Quarterly review", ";TZID=Europe/Berlin:20241028T140000",
    ";TZID=Europe/Berlin:20241028T150000", "ORGANIZER;CN=Bob Boss:mailto:bob@example.org",
    "ATTENDEE;CN=Carol;ROLE=REQ-PARTICIPANT:mailto:carol@example.org",
    "ATTENDEE;ROLE=OPT-PARTICIPANT:mailto:dave@example.net"), timezone=BERLIN)
EVENTS = {
    # Weekly across the spring DST change: 09:00 Berlin is 08:00Z, then 07:00Z.
    "dst": vcalendar(vevent("dst@t", "Wochenrunde", ";TZID=Europe/Berlin:20240321T090000",
                            ";TZID=Europe/Berlin:20240321T100000",
                            "RRULE:FREQ=WEEKLY;COUNT=4"), timezone=BERLIN),
    # Daily, one day cancelled and one moved (and renamed).
    "exc": vcalendar(
        vevent("exc@t", "Daily", ":20240610T080000Z", ":20240610T083000Z",
               "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20240612T080000Z"),
        vevent("exc@t", "Daily (moved)", ":20240613T150000Z", ":20240613T153000Z",
               "RECURRENCE-ID:20240613T080000Z")),
    "long": vcalendar(vevent("long@t", "Stand-up", ";VALUE=DATE:20240101",
                             ";VALUE=DATE:20240102", "RRULE:FREQ=DAILY;COUNT=500")),
    "until": vcalendar(vevent("until@t", "Biweekly", ";TZID=Europe/Berlin:20240108T090000",
                              ";TZID=Europe/Berlin:20240108T100000",
                              "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;UNTIL=20240401T000000Z"),
                       timezone=BERLIN),
    "uni": vcalendar(vevent("uni@t", "Überstunden – 会议 – встреча ✓", ":20240701T120000Z",
                            ":20240701T130000Z")),
    "meeting": MEETING,
    "rdate": vcalendar(vevent("rdate@t", "Odd days", ":20240901T100000Z", ":20240901T110000Z",
                              "RDATE:20240905T100000Z")),
}
CARDS = {
    "zoe": vcard("zoe@t", "Zoë Ærøskøbing 山田", "zoe@example.org", "Zoe@Example.NET"),
    "photo": vcard("photo@t", "Photo Person", "photo@example.org",
                   photo=base64.b64encode(PHOTO).decode()),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(users=[UserSpec(UPN), UserSpec("bob@contoso.test")])) as running:
        yield running


def source() -> MemoryPimStore:
    src = MemoryPimStore()
    cal = src.add_collection("/cal/", "calendar", "Kalender ü")
    book = src.add_collection("/book/", "contacts", "Адресная книга")
    for name, body in EVENTS.items():
        src.add(cal.href, name + ".ics", body)
    for name, body in CARDS.items():
        src.add(book.href, name + ".vcf", body)
    return src


async def test_edge_cases_once_rerun_adopt_verify_and_nobody_invited(sim: Simulator,
                                                                     tmp_path) -> None:  # type: ignore[no-untyped-def]
    src, dst = source(), graph_store(sim, UPN)
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "s.db"), "edge")
        report = await copy_pim(src, dst, state, KINDS)
        t = report.totals()
        n = len(EVENTS) + len(CARDS)
        assert (t["selected"], t["copied"], t["failed"]) == (n, n, 0), report
        assert sim.outbox() == []  # the meeting's three people were not invited
        notes = {c.uid: c.notes for e in report.collections for c in e.changed}
        assert any("not invited" in x for x in notes["meet@t"]), notes
        assert any("RDATE" in x for x in notes["rdate@t"]), notes
        assert len(sim.events(UPN)) == len(EVENTS) and len(sim.contacts(UPN)) == len(CARDS)

        # What Graph holds, read back, equals the source (recurrence by its occurrences).
        got = {}
        for c in await dst.collections(KINDS):
            for item in await dst.fetch(c, [r.href for r in await dst.list_items(c)]):
                o = read_object(item.body, c.kind)
                got[o.uid] = (o.fields, item.body)
        for body in EVENTS.values():
            mine = read_object(body, "calendar")
            theirs, graph_body = got[mine.uid]
            if mine.uid == "rdate@t":  # Graph has no RDATE: reported above
                mine.fields["series"]["rdate"] = []
            assert same_except_rrule(mine.fields, theirs) == [], mine.uid
            assert occurrences(body) == occurrences(graph_body), mine.uid
        assert len(occurrences(EVENTS["long"]) or []) == 500
        for body in CARDS.values():
            mine = read_object(body, "contacts")
            assert got[mine.uid][0] == mine.fields
        photos = list(sim.state.pim_photos.values())
        assert [p for p, _ in photos] == [PHOTO]

        # The meeting keeps its people another way: body text and an extended property.
        meeting = next(e for e in sim.events(UPN) if e.ext.get(PROP_UID) == "meet@t")
        assert "attendees" not in meeting.props or not meeting.props["attendees"]
        assert "carol@example.org" in meeting.props["body"]["content"]
        assert "dave@example.net" in meeting.ext[PROP_PEOPLE]

        again = (await copy_pim(src, dst, state, KINDS)).totals()
        assert (again["copied"], again["skipped"]) == (0, n)
        lost = (await copy_pim(src, dst, PimState(open_engine(tmp_path / "lost.db"), "edge"),
                               KINDS)).totals()
        assert (lost["copied"], lost["adopted"], lost["failed"]) == (0, n, 0), lost
        assert len(sim.events(UPN)) == len(EVENTS) and len(sim.contacts(UPN)) == len(CARDS)

        v = await verify_pim(src, dst, KINDS)
        assert v["ok"] and v["totals"]["matched"] == n, v["problems"]
        assert sim.outbox() == []
    finally:
        await dst.close()


async def test_a_changed_source_object_is_written_over_its_copy(sim: Simulator,
                                                                tmp_path) -> None:  # type: ignore[no-untyped-def]
    src, dst = MemoryPimStore(), graph_store(sim, "bob@contoso.test")
    cal = src.add_collection("/c/", "calendar", "Work")
    src.add(cal.href, "x.ics", EVENTS["exc"])
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "s.db"), "change")
        assert (await copy_pim(src, dst, state, KINDS)).totals()["copied"] == 1
        src.data[cal.href][cal.href + "x.ics"] = EVENTS["exc"].replace(b"Daily (moved)",
                                                                       b"Daily (moved again)")
        t = (await copy_pim(src, dst, state, KINDS)).totals()
        assert (t["copied"], t["updated"]) == (1, 1)
        v = await verify_pim(src, dst, KINDS)
        assert v["ok"], v["problems"]
        assert len(sim.events("bob@contoso.test")) == 1
    finally:
        await dst.close()


def test_simulator_sends_invitations_for_attendees_as_exchange_does(sim: Simulator) -> None:
    """The outbox is not empty by construction: a create with attendees fills it."""
    with graph_client(sim) as g:
        cal = g.post(f"/users/{UPN}/calendars", json={"name": "Invites"}).json()
        before = len(sim.outbox())
        r = g.post(f"/users/{UPN}/calendars/{cal['id']}/events", json={
            "subject": "s", "start": {"dateTime": "2024-01-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-01-01T11:00:00", "timeZone": "UTC"},
            "attendees": [{"emailAddress": {"address": "x@example.org"}, "type": "required"}]})
        assert r.status_code == 201
        assert [i.recipient for i in sim.outbox()[before:]] == ["x@example.org"]
        dup = g.post(f"/users/{UPN}/calendars", json={"name": "invites"})
        assert dup.status_code == 409
        bad = g.get(f"/users/{UPN}/calendars/{cal['id']}/events",
                    params={"$filter": "subject eq 's'"})
        assert bad.status_code == 400


def test_calendar_and_contact_routes_are_throttled_like_mail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Microsoft's per-mailbox request budget applies to these routes too: the simulator
    answers 429 with Retry-After, the store's client waits and every contact arrives once."""
    import asyncio
    from dataclasses import replace

    from mailtrek.sim import Limits

    limits = replace(Limits(), requests_per_window=12, request_window_s=2.0)
    with Simulator(SimConfig(users=[UserSpec(UPN)], limits=limits)) as small:
        src = MemoryPimStore()
        book = src.add_collection("/b/", "contacts", "Busy")
        for n in range(15):
            src.add(book.href, f"{n}.vcf", vcard(f"c{n}@t", f"Person {n}", f"p{n}@example.org"))

        async def run() -> dict[str, int]:
            dst = graph_store(small, UPN)
            await dst.connect()
            try:
                return (await copy_pim(src, dst, PimState(open_engine(tmp_path / "t.db"), "t"),
                                       KINDS)).totals()
            finally:
                await dst.close()

        t = asyncio.run(run())
        assert (t["copied"], t["failed"]) == (15, 0), t
        assert small.throttled_count(UPN) > 0
        assert sorted(c.ext[PROP_UID] for c in small.contacts(UPN)) == sorted(
            f"c{n}@t" for n in range(15))
