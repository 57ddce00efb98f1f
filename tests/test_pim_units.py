"""Pure parts of contacts and calendars: addresses, --items, fields, XML, state schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from mailtrek.cli.pim_cmd import parse_items
from mailtrek.errors import ProtocolError, UsageError
from mailtrek.pim.fields import BrokenObjectError, differences, read_object
from mailtrek.state.db import open_engine
from mailtrek.state.migrate import _config, head
from mailtrek.stores.dav.address import is_dav_address, parse_dav_address
from mailtrek.stores.dav.store import item_name
from mailtrek.stores.dav.xml import conflict_href, parse_multistatus
from pim_helpers import BERLIN, vcalendar, vcard, vevent


def test_dav_addresses() -> None:
    a = parse_dav_address("dav+https://alice@dav.example.org/remote.php/dav")
    assert (a.origin, a.user, a.path) == ("https://dav.example.org", "alice", "/remote.php/dav/")
    assert a.display() == "dav+https://alice@dav.example.org/remote.php/dav/"
    b = parse_dav_address("dav+http://bob%40example.org@127.0.0.1:5232")
    assert (b.origin, b.user, b.path) == ("http://127.0.0.1:5232", "bob@example.org", "/")
    assert is_dav_address("DAV+HTTPS://x@y/") and not is_dav_address("imaps://x@y")
    with pytest.raises(UsageError) as e:
        parse_dav_address("dav+https://alice:Secret99@host/")
    assert "Secret99" not in str(e.value)
    for bad in ("dav+ftp://a@b/", "dav+https://host/", "dav+https://a@host:99999/"):
        with pytest.raises(UsageError):
            parse_dav_address(bad)


def test_items_option() -> None:
    assert parse_items(None) == ("calendar", "contacts")
    assert parse_items("contacts") == ("contacts",)
    assert parse_items("Calendars, contacts,calendars") == ("calendar", "contacts")
    with pytest.raises(UsageError):
        parse_items("notes")


def test_event_fields_are_instants_and_recurrence() -> None:
    berlin = read_object(vcalendar(vevent(
        "u1", "Wochenrunde", ";TZID=Europe/Berlin:20240321T090000",
        ";TZID=Europe/Berlin:20240321T100000", "RRULE:COUNT=4;FREQ=WEEKLY",
        "EXDATE;TZID=Europe/Berlin:20240328T090000"), timezone=BERLIN), "calendar")
    utc = read_object(vcalendar(vevent(
        "u1", "Wochenrunde", ":20240321T080000Z", ":20240321T090000Z",
        "RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20240328T080000Z")), "calendar")
    assert berlin.fields == utc.fields  # same instants, rule parts in any order
    assert berlin.fields["series"]["exdate"] == ["2024-03-28T08:00:00Z"]
    summer = read_object(vcalendar(vevent(
        "u2", "x", ";TZID=Europe/Berlin:20240401T090000", ";TZID=Europe/Berlin:20240401T100000"),
        timezone=BERLIN), "calendar")
    assert summer.fields["series"]["start"] == "2024-04-01T07:00:00Z"  # after the DST change
    allday = read_object(vcalendar(vevent("u3", "Holiday", ";VALUE=DATE:20241225",
                                          ";VALUE=DATE:20241226")), "calendar")
    assert allday.fields["series"]["start"] == "2024-12-25"
    moved = utc.fields | {"series": utc.fields["series"] | {"start": "2024-03-21T09:00:00Z"}}
    assert differences(utc.fields, moved) == ["series.start"]


def test_contact_fields_and_broken_objects() -> None:
    card = read_object(vcard("c1", "Zoë Ærøskøbing", "Zoe@Example.org", "b@x.test"), "contacts")
    assert (card.uid, card.fields) == ("c1", {"fn": "Zoë Ærøskøbing",
                                             "emails": ["b@x.test", "zoe@example.org"]})
    cases = {
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Uid\r\nEND:VCARD\r\n": "no UID",
        vcalendar(): "no event, task or journal in it",
        vcalendar(vevent("x", "bad", ":INVALID", ":20240101T000000Z")): "bad DTSTART",
        vcalendar(vevent("x", "rule", ":20240101T000000Z", ":20240101T010000Z",
                         "RRULE:FREQ=SOMETIMES")): "bad RRULE",
        b"\xff\xfe": "not UTF-8",
    }
    for body, reason in cases.items():
        kind = "contacts" if b"VCARD" in body else "calendar"
        with pytest.raises(BrokenObjectError) as e:
            read_object(body, kind)  # type: ignore[arg-type]
        assert reason in e.value.reason


def test_multistatus_reading() -> None:
    body = b"""<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"
      xmlns:c="urn:ietf:params:xml:ns:caldav"><d:response>
      <d:href>/cal/a%20b.ics</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop>
      <d:status>HTTP/1.1 200 OK</d:status></d:propstat><d:propstat><d:prop><d:displayname/>
      </d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>
      <d:response><d:href>/cal/gone.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status>
      </d:response></d:multistatus>"""
    a, gone = parse_multistatus(body)
    assert (a.href, a.text("{DAV:}getetag"), a.text("{DAV:}displayname")) == (
        "/cal/a b.ics", '"1"', None)
    assert (gone.href, gone.status) == ("/cal/gone.ics", 404)
    with pytest.raises(ProtocolError):
        parse_multistatus(b"<html>nope</html>")
    err = (b'<d:error xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
           b"<c:no-uid-conflict><d:href>/cal/x.ics</d:href></c:no-uid-conflict></d:error>")
    assert conflict_href(err) == "/cal/x.ics"
    assert item_name("abc@x.test", "calendar") == "abc@x.test.ics"
    assert item_name("a/b c?", "contacts").endswith(".vcf") and "/" not in item_name("a/b", "calendar")


def test_state_tables_come_with_the_migration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    with old.begin() as c:  # a database made before contacts and calendars existed
        cfg = _config(c)
        command.upgrade(cfg, "0003")
    assert "pim_items" not in inspect(old).get_table_names()
    new = open_engine(tmp_path / "old.db")
    assert {"pim_items", "pim_collections"} <= set(inspect(new).get_table_names())
    with new.connect() as c:
        from mailtrek.state.migrate import current

        assert current(c) == head()


async def test_sync_adopts_by_uid_through_the_create_path_too(tmp_path: Path) -> None:
    """State knows the collection but not one object a former run (or tool) left there."""
    from mailtrek.pim.memory import MemoryPimStore
    from mailtrek.pim.model import KINDS
    from mailtrek.pim.sync import copy_pim
    from mailtrek.state.pim import PimState

    src, dst = MemoryPimStore(), MemoryPimStore()
    cal = src.add_collection("/s/cal/", "calendar", "Cal")

    def ev(uid: str, title: str) -> bytes:
        return vcalendar(vevent(uid, title, ":20240101T100000Z", ":20240101T110000Z"))

    src.add(cal.href, "a.ics", ev("a", "A"))
    state = PimState(open_engine(tmp_path / "s.db"), "m")
    first = await copy_pim(src, dst, state, KINDS)
    assert first.totals()["copied"] == 1 and first.totals()["adopted"] == 0
    [dcal] = await dst.collections(KINDS)
    dst.add(dcal.href, "b-old.ics", ev("b", "B, an older copy"))  # lost record of "b"
    dst.add(dcal.href, "c-same.ics", ev("c", "C"))
    src.add(cal.href, "b.ics", ev("b", "B"))
    src.add(cal.href, "c.ics", ev("c", "C"))
    second = await copy_pim(src, dst, state, KINDS)
    t = second.totals()
    assert (t["selected"], t["copied"], t["updated"], t["adopted"], t["skipped"]) == (3, 1, 1, 1, 2)
    assert read_object(dst.data[dcal.href][dcal.href + "b-old.ics"], "calendar").title == "B"
    assert len(dst.data[dcal.href]) == 3  # nothing twice
    third = await copy_pim(src, dst, state, KINDS)
    assert third.totals()["copied"] == 0 and third.totals()["skipped"] == 3


def test_match_collection_prefers_the_known_href_then_the_name() -> None:
    from mailtrek.pim.model import Collection, match_collection

    a, b = Collection("/a/", "calendar", "Work"), Collection("/b/", "calendar", "work")
    assert match_collection([a, b], "/b/", "Work", fold_case=False) is b
    assert match_collection([a, b], None, "WORK", fold_case=True) is a
    assert match_collection([a, b], None, "WORK", fold_case=False) is None
    assert match_collection([a, b], "/gone/", "work", fold_case=False) is b
