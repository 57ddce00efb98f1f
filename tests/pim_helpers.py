"""Shared bits of the contacts-and-calendars tests: stores, loading, generated objects."""

from __future__ import annotations

from pathlib import Path

from mailtrek.devtools.dav_load import Loader, LoadResult
from mailtrek.stores.dav import DavStore, parse_dav_address


def store(radicale, user: str, password: str) -> DavStore:  # type: ignore[no-untyped-def]
    """An unconnected DavStore for a Radicale user, trusting the test CA."""
    return DavStore(parse_dav_address(radicale.dav_url(user)), password,
                    ca_file=str(radicale.ca_file))


def load_corpus(radicale, user: str, password: str, files: Path,  # type: ignore[no-untyped-def]
                per_calendar: int = 25) -> LoadResult:
    """Put the corpus's .ics files into calendars ``Corpus 01``... (``per_calendar`` files
    each: Radicale's PUT cost grows with the collection) and its .vcf files into
    ``Contacts``. An object whose UID another file already used in that collection goes
    to an overflow collection (``Corpus 01 2``...). Returns what was stored and refused.
    """
    result = LoadResult()
    ics, vcf = sorted(files.glob("*.ics")), sorted(files.glob("*.vcf"))
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        for n in range(0, len(ics), per_calendar):
            name = f"Corpus {n // per_calendar + 1:02d}"
            cal = load.make_collection(name, "calendar")
            got = load.load(cal, ics[n:n + per_calendar], "calendar", overflow=True)
            result.stored += got.stored
            result.refused += got.refused
        book = load.make_collection("Contacts", "contacts")
        got = load.load(book, vcf, "contacts", overflow=True)
    result.stored += got.stored
    result.refused += got.refused
    return result


def vcalendar(*components: str, timezone: str = "") -> bytes:
    body = "".join(components)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailtrek tests//EN\r\n"
            f"{timezone}{body}END:VCALENDAR\r\n").encode()


def vevent(uid: str, summary: str, start: str, end: str, *extra: str) -> str:
    lines = "".join(f"{e}\r\n" for e in extra)
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nDTSTART{start}\r\n"
            f"DTEND{end}\r\nSUMMARY:{summary}\r\n{lines}END:VEVENT\r\n")


BERLIN = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n"
    "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\n"
    "DTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
    "BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n"
    "DTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
    "END:VTIMEZONE\r\n"
)


def vcard(uid: str, fn: str, *emails: str, photo: str | None = None) -> bytes:
    mails = "".join(f"EMAIL;TYPE=INTERNET:{e}\r\n" for e in emails)
    pic = f"PHOTO;ENCODING=b;TYPE=JPEG:{photo}\r\n" if photo else ""
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{fn}\r\nN:{fn};;;;\r\n"
            f"{mails}{pic}END:VCARD\r\n").encode()
