"""Generated contacts and calendars DAV to DAV: DST, exceptions, long series, non-ASCII, photos,
changes at the source, broken objects one by one, and the CLI's refusals."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from mailtrek.cli.main import app
from mailtrek.devtools.dav_load import Loader
from mailtrek.pim.memory import MemoryPimStore
from mailtrek.pim.model import KINDS
from mailtrek.pim.sync import copy_pim
from mailtrek.pim.verify import verify_pim
from mailtrek.state.db import open_engine
from mailtrek.state.pim import PimState
from pim_helpers import BERLIN, store, vcalendar, vcard, vevent

PHOTO = base64.b64encode(bytes(range(256)) * 40).decode()  # 10 KB of every byte value
EDGE = {
    # A weekly meeting across the spring DST change: 09:00 Berlin is 08:00Z, then 07:00Z.
    "dst.ics": vcalendar(vevent("dst@t", "Wochenrunde", ";TZID=Europe/Berlin:20240321T090000",
                                ";TZID=Europe/Berlin:20240321T100000",
                                "RRULE:FREQ=WEEKLY;COUNT=4"), timezone=BERLIN),
    # A daily series with one moved instance and one cancelled day.
    "exception.ics": vcalendar(
        vevent("exc@t", "Daily", ":20240610T080000Z", ":20240610T083000Z",
               "RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20240612T080000Z"),
        vevent("exc@t", "Daily (moved)", ":20240613T150000Z", ":20240613T153000Z",
               "RECURRENCE-ID:20240613T080000Z")),
    "series500.ics": vcalendar(vevent("long@t", "Stand-up", ";VALUE=DATE:20240101",
                                      ";VALUE=DATE:20240102", "RRULE:FREQ=DAILY;COUNT=500")),
    "unicode.ics": vcalendar(vevent("uni@t", "Überstunden – 会议 – встреча ✓",
                                    ":20240701T120000Z", ":20240701T130000Z")),
    "floating.ics": vcalendar(vevent("float@t", "Lunch wherever I am", ":20240801T120000",
                                     ":20240801T130000")),
}
CARDS = {
    "zoe.vcf": vcard("zoe@t", "Zoë Ærøskøbing 山田", "zoe@example.org", "Zoe@Example.NET"),
    "photo.vcf": vcard("photo@t", "Photo Person", "photo@example.org", photo=PHOTO),
}


def _put_all(radicale, user: str, password: str, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    for name, body in {**EDGE, **CARDS}.items():
        (tmp_path / name).write_bytes(body)
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        cal = load.make_collection("Kalender ü", "calendar")
        book = load.make_collection("Адресная книга", "contacts")
        a = load.load(cal, [tmp_path / n for n in EDGE], "calendar")
        b = load.load(book, [tmp_path / n for n in CARDS], "contacts")
    assert not a.refused and not b.refused, a.refused + b.refused
    return {"calendar": cal, "contacts": book}


async def test_edge_cases_arrive_equal_and_a_source_change_is_carried_once(
        radicale, dav_user, tmp_path: Path) -> None:
    (su, sp), (du, dp) = dav_user(), dav_user()
    where = _put_all(radicale, su, sp, tmp_path)
    src, dst = store(radicale, su, sp), store(radicale, du, dp)
    await src.connect()
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "state.db"), "edge")
        r1 = await copy_pim(src, dst, state, KINDS)
        assert r1.totals()["copied"] == len(EDGE) + len(CARDS) and r1.complete, r1
        assert {c.name for c in r1.collections} == {"Kalender ü", "Адресная книга"}
        v = await verify_pim(src, dst, KINDS)
        assert v["ok"] and v["totals"]["matched"] == len(EDGE) + len(CARDS), v["problems"]

        # What arrived: instants across DST, the exception, 500 instances, the photo.
        fields = {}
        for c in await dst.collections(KINDS):
            for item in await dst.fetch(c, [r.href for r in await dst.list_items(c)]):
                from mailtrek.pim.fields import read_object

                o = read_object(item.body, c.kind)
                fields[o.uid] = (o.fields, item.body)
        assert fields["dst@t"][0]["series"]["start"] == "2024-03-21T08:00:00Z"
        assert fields["exc@t"][0]["instance 2024-06-13T08:00:00Z"]["start"] == "2024-06-13T15:00:00Z"
        assert fields["exc@t"][0]["series"]["exdate"] == ["2024-06-12T08:00:00Z"]
        assert "COUNT=500" in fields["long@t"][0]["series"]["rrule"]
        assert fields["float@t"][0]["series"]["start"] == "floating 2024-08-01T12:00:00"
        assert fields["zoe@t"][0] == {"fn": "Zoë Ærøskøbing 山田",
                                      "emails": ["zoe@example.net", "zoe@example.org"]}
        assert PHOTO[:200] in fields["photo@t"][1].decode().replace("\n ", "").replace("\r", "")

        # A change at the source is carried over once, and only that.
        with Loader(radicale.base_url, su, sp, verify=radicale.ssl_context()) as load:
            load.put(where["calendar"], "unicode.ics", EDGE["unicode.ics"].replace(
                "Überstunden".encode(), b"Moved"), "calendar")
        src._collections = None  # see the changed sync tokens
        r2 = await copy_pim(src, dst, state, KINDS)
        t2 = r2.totals()
        assert (t2["copied"], t2["updated"], t2["failed"]) == (1, 1, 0), r2
        assert [c.unchanged for c in r2.collections if c.kind == "contacts"] == [True]
        assert [c.incremental for c in r2.collections if c.kind == "calendar"] == [True]
        v2 = await verify_pim(src, dst, KINDS)
        assert v2["ok"], v2["problems"]
        [cal] = await src.collections(["calendar"])
        assert await src.changes(cal, "http://radicale.org/ns/sync/expired") is None
        delta = await src.changes(cal, "")  # the empty token asks for everything
        assert delta is not None and len(delta.changed) == len(EDGE) and delta.token
    finally:
        await src.close()
        await dst.close()


async def test_broken_objects_are_reported_one_by_one_and_the_rest_goes_on(
        radicale, dav_user, tmp_path: Path) -> None:
    """Objects a lax server keeps but the copy cannot read fail alone, with their reasons.

    Radicale refuses (or hides) such objects, so the source is the in-memory PIM store.
    """
    du, dp = dav_user()
    src = MemoryPimStore()
    cal = src.add_collection("/mem/cal/", "calendar", "Mixed")
    for i in range(3):
        src.add(cal.href, f"ok{i}.ics", vcalendar(vevent(
            f"ok{i}@t", f"fine {i}", ":20240101T100000Z", ":20240101T110000Z")))
    src.add(cal.href, "nouid.ics", EDGE["unicode.ics"].replace(b"UID:uni@t\r\n", b""))
    src.add(cal.href, "two.ics", vcalendar(
        vevent("a@t", "a", ":20240101T100000Z", ":20240101T110000Z"),
        vevent("b@t", "b", ":20240101T100000Z", ":20240101T110000Z")))
    src.add(cal.href, "latin1.ics", "SUMMARY:Müller".encode("latin-1"))
    src.add(cal.href, "again.ics", vcalendar(vevent(
        "ok1@t", "same UID elsewhere", ":20240101T100000Z", ":20240101T110000Z")))
    dst = store(radicale, du, dp)
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "s.db"), "b")
        report = await copy_pim(src, dst, state, KINDS)
        [entry] = report.collections
        reasons = {p.href.rsplit("/", 1)[-1]: p.reason for p in entry.problems}
        assert reasons == {"nouid.ics": "no UID", "two.ics": "2 different UIDs in one object",
                           "latin1.ics": "not UTF-8 text (byte 9)",
                           (reasons.get("again.ics") and "again.ics") or "ok1.ics":
                           reasons.get("again.ics") or reasons.get("ok1.ics")}
        assert any("UID also used by" in r for r in reasons.values())
        assert (entry.selected, entry.copied, entry.failed) == (7, 3, 4)
        assert not report.complete
        again = await copy_pim(src, dst, state, KINDS)  # still reported, nothing else done
        assert again.totals()["failed"] == 4 and again.totals()["copied"] == 0
    finally:
        await dst.close()


def mailtrek(*args: str, env: dict[str, str]) -> Result:
    """Run the CLI in this process (the corpus test runs it as a program)."""
    full = {k: None for k in os.environ if k.startswith("MAILTREK_")} | env
    return CliRunner().invoke(app, list(args), env=full)  # type: ignore[arg-type]


def test_cli_refusals_are_one_clear_line(radicale, dav_user, tmp_path: Path) -> None:
    (su, sp) = dav_user()
    src = radicale.dav_url(su)
    ca = ["--ca-file", str(radicale.ca_file), "--state", str(tmp_path / "s.db")]
    m365 = mailtrek("copy", src, "m365://a@contoso.test", *ca,
                    env={"MAILTREK_SOURCE_PASSWORD": sp})
    # m365:// is a destination now; without tenant settings it says which one is missing
    assert m365.exit_code == 2 and "MAILTREK_M365_TENANT_ID" in m365.output, m365.output
    items = mailtrek("verify", src, src, *ca[:2], "--items", "notes", env={})
    assert items.exit_code == 2 and "--items" in items.output
    secret = "wrong-Secret-123"
    bad = mailtrek("copy", src, radicale.dav_url(su), *ca,
                   env={"MAILTREK_SOURCE_PASSWORD": secret, "MAILTREK_DEST_PASSWORD": secret})
    assert bad.exit_code == 3, bad.output
    assert "refused the login" in bad.output and secret not in bad.output
    untrusted = mailtrek("copy", src, radicale.dav_url(su), "--state", str(tmp_path / "s.db"),
                         env={"MAILTREK_SOURCE_PASSWORD": sp, "MAILTREK_DEST_PASSWORD": sp})
    assert untrusted.exit_code == 4 and "certificate" in untrusted.output, untrusted.output
