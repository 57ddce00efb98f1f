"""iCalendar/vCard → Microsoft Graph JSON: time zones, all-day, recurrence, contacts, corpus."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mailtrek.devtools.dav_load import split_objects
from mailtrek.pim.fields import BrokenObjectError, read_object
from mailtrek.pim.graph_map import contact_to_graph, event_to_graph
from mailtrek.pim.graph_time import windows_zone
from pim_helpers import BERLIN, vcalendar, vcard, vevent


def test_time_zones_become_windows_names() -> None:
    assert windows_zone("Europe/Berlin") == "W. Europe Standard Time"
    assert windows_zone("/mozilla.org/20070129_1/America/New_York") == "Eastern Standard Time"
    assert windows_zone("W. Europe Standard Time") == "W. Europe Standard Time"
    assert windows_zone("Europe/Vienna") == "W. Europe Standard Time"  # same rules
    assert windows_zone("Not/AZone") is None


def rule(r: str, start: str = ";TZID=Europe/Berlin:20240108T090000") -> dict:  # Monday
    g = event_to_graph(vcalendar(vevent("r@t", "x", start, start.replace("T09", "T10"),
                                        f"RRULE:{r}"), timezone=BERLIN))
    return {"recurrence": g.body.get("recurrence"), "lost": g.lost}


def test_recurrence_patterns() -> None:
    weekly = rule("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;UNTIL=20240401T000000Z")["recurrence"]
    assert weekly["pattern"] == {"interval": 2, "type": "weekly", "firstDayOfWeek": "monday",
                                 "daysOfWeek": ["monday", "wednesday"]}
    # UNTIL is 1 April 00:00 UTC: the Monday 1 April 09:00 Berlin is after it, so Graph's
    # end date (every occurrence on it included) is the last occurrence's, 20 March.
    assert weekly["range"] == {"type": "endDate", "startDate": "2024-01-08",
                               "endDate": "2024-03-20", "recurrenceTimeZone":
                               "W. Europe Standard Time"}
    workdays = rule("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=10")["recurrence"]
    assert workdays["pattern"]["type"] == "weekly" and len(workdays["pattern"]["daysOfWeek"]) == 5
    assert workdays["range"]["numberOfOccurrences"] == 10
    second_tue = rule("FREQ=MONTHLY;BYDAY=2TU")["recurrence"]["pattern"]
    assert (second_tue["type"], second_tue["index"], second_tue["daysOfWeek"]) == (
        "relativeMonthly", "second", ["tuesday"])
    last_fri = rule("FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1")["recurrence"]["pattern"]
    assert (last_fri["index"], last_fri["daysOfWeek"]) == ("last", ["friday"])
    yearly = rule("FREQ=YEARLY")["recurrence"]
    assert yearly["pattern"] == {"interval": 1, "type": "absoluteYearly", "month": 1,
                                 "dayOfMonth": 8} and yearly["range"]["type"] == "noEnd"
    for bad, why in (("FREQ=HOURLY", "frequency HOURLY"), ("FREQ=MONTHLY;BYMONTHDAY=-1",
                     "counted-from-the-end"), ("FREQ=YEARLY;BYWEEKNO=20", "BYWEEKNO"),
                     ("FREQ=MONTHLY;BYDAY=5MO", "cannot number")):
        got = rule(bad)
        assert got["recurrence"] is None and any(why in line for line in got["lost"]), bad


def test_event_times_all_day_exceptions_and_attendees() -> None:
    g = event_to_graph(vcalendar(
        vevent("e@t", "Daily", ";TZID=Europe/Berlin:20240610T080000",
               ";TZID=Europe/Berlin:20240610T083000", "RRULE:FREQ=DAILY;COUNT=5",
               "EXDATE;TZID=Europe/Berlin:20240612T080000", "RDATE:20240620T080000Z",
               "ATTENDEE;CN=Bob;ROLE=OPT-PARTICIPANT:mailto:bob@example.org",
               "ORGANIZER;CN=Al:mailto:al@example.org",
               "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nEND:VALARM"),
        vevent("e@t", "Daily (moved)", ":20240613T150000Z", ":20240613T153000Z",
               "RECURRENCE-ID;TZID=Europe/Berlin:20240613T080000"), timezone=BERLIN))
    assert g.body["start"] == {"dateTime": "2024-06-10T08:00:00",
                               "timeZone": "W. Europe Standard Time"}
    assert g.body["reminderMinutesBeforeStart"] == 15 and "attendees" not in g.body
    assert g.attendees == [{"emailAddress": {"address": "bob@example.org", "name": "Bob"},
                            "type": "optional"}]
    assert g.organizer == {"emailAddress": {"address": "al@example.org", "name": "Al"}}
    assert g.cancelled == [{"dateTime": "2024-06-12T08:00:00",
                            "timeZone": "W. Europe Standard Time"}]
    [(when, moved)] = g.overrides
    assert when["dateTime"] == "2024-06-13T08:00:00"
    assert moved["start"] == {"dateTime": "2024-06-13T15:00:00", "timeZone": "UTC"}
    assert any(line.startswith("RDATE") for line in g.lost)
    day = event_to_graph(vcalendar(vevent("d@t", "Holiday", ";VALUE=DATE:20241225",
                                          ";VALUE=DATE:20241226")))
    assert day.body["isAllDay"] and day.body["end"]["dateTime"] == "2024-12-26T00:00:00"
    floating = event_to_graph(vcalendar(vevent("f@t", "x", ":20240801T120000",
                                               ":20240801T130000")), default_zone="UTC")
    assert "floating" in floating.lost[0]


def test_contacts() -> None:
    g = contact_to_graph(vcard("c@t", "Zoë Ærøskøbing", "a@x.test", "b@x.test", "c@x.test",
                               "d@x.test", photo="aGVsbG8="))
    assert g.body["displayName"] == "Zoë Ærøskøbing" and g.body["surname"] == "Zoë Ærøskøbing"
    assert [e["address"] for e in g.body["emailAddresses"]] == ["a@x.test", "b@x.test",
                                                                "c@x.test"]
    assert g.photo == b"hello" and "d@x.test" in g.lost[0]
    no_year = contact_to_graph(b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:n\r\nFN:N\r\nN:N;;;;\r\n"
                               b"BDAY:--0415\r\nTEL;TYPE=CELL:+491701\r\nEND:VCARD\r\n")
    assert no_year.body["mobilePhone"] == "+491701" and "birthday" in no_year.lost[0]


def test_whole_corpus_maps_without_crashing(pim_corpus_dir: Path) -> None:
    logging.disable(logging.ERROR)
    mapped = 0
    try:
        for f in sorted(pim_corpus_dir.iterdir()):
            kind = "calendar" if f.suffix == ".ics" else "contacts"
            raw = f.read_bytes()
            for _, body in split_objects(raw, kind) or [(None, raw)]:
                try:
                    o = read_object(body, kind)
                except BrokenObjectError:
                    continue
                if kind == "contacts":
                    g = contact_to_graph(body)
                    assert g.body.get("displayName", "") == o.fields["fn"]
                elif next(iter(o.fields.values()))["type"] == "VEVENT":
                    g = event_to_graph(body)
                    assert g.uid == o.uid and g.body["start"]["timeZone"]
                    has_rule = o.fields.get("series", {}).get("rrule")
                    assert ("recurrence" in g.body) or not has_rule or any(
                        line.startswith("RRULE") for line in g.lost), f.name
                else:
                    continue
                assert all(":" in line for line in g.lost), g.lost  # each loss says why
                mapped += 1
    finally:
        logging.disable(logging.NOTSET)
    assert mapped > 150
    with pytest.raises(BrokenObjectError):
        event_to_graph(vcalendar())
