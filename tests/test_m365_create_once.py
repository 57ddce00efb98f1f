"""Create-once in the Graph PIM store (``stores/m365/create_once``): a POST whose answer the
simulator cuts off after committing is looked up afresh and adopted, never made twice —
for an event in a calendar just listed, a contact, and a task whose To Do list was made
between lookup and POST."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailtrek.pim.model import Collection
from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.stores.m365.api import InDoubtError
from mailtrek.stores.m365.create_once import create_once
from pim_graph_helpers import graph_store
from pim_helpers import vcalendar, vcard, vevent

UPN = "once@contoso.test"


def vtodo(uid: str, summary: str) -> bytes:
    return vcalendar(f"BEGIN:VTODO\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n"
                     f"SUMMARY:{summary}\r\nEND:VTODO\r\n")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(users=[UserSpec(UPN)])) as running:
        yield running


async def test_lost_answers_are_adopted_not_duplicated(sim: Simulator) -> None:
    dst = graph_store(sim, UPN)
    await dst.connect()
    try:
        cal = await dst.ensure_collection(Collection("/c/", "calendar", "Once"))
        book = await dst.ensure_collection(Collection("/b/", "contacts", "Once"))
        await dst.list_items(cal)  # the listing says "no such UID": the retry must ask again
        sim.drop_next_response_after_commit()
        got = await dst.put(cal, "ev@t", vcalendar(vevent("ev@t", "Lost", ":20240101T100000Z",
                                                          ":20240101T110000Z")))
        assert got.existing and got.existing.startswith("events/"), got
        assert len(sim.events(UPN)) == 1
        again = await dst.put(cal, "ev@t", vcalendar(vevent("ev@t", "Lost", ":20240101T100000Z",
                                                            ":20240101T110000Z")))
        assert again.existing == got.existing

        dora = await dst.put(book, "d@t", vcard("d@t", "Dora", "d@example.org"))
        # A store that has not listed the folder (a resumed run): each lookup is a $filter.
        other = graph_store(sim, UPN)
        try:
            sim.drop_response_after_commit(sim.state.graph_requests + 2)  # $filter, POST
            card = await other.put(book, "c@t", vcard("c@t", "Carla", "c@example.org"))
            assert card.existing and len(sim.contacts(UPN)) == 2, card
            eve = await other.put(book, "e@t", vcard("e@t", "Eve", "e@example.org"))
            assert eve.href and len(sim.contacts(UPN)) == 3, eve
            # What it made or adopted is no partial listing that would hide Dora (made
            # by another run) from the next lookup: no twin of her.
            again = await other.put(book, "d@t", vcard("d@t", "Dora", "d@example.org"))
            assert again.existing == dora.href and len(sim.contacts(UPN)) == 3, again
        finally:
            await other.close()

        # Tasks: the first creates the To Do list "Once" between its lookup and its POST.
        first = await dst.put(cal, "t1@t", vtodo("t1@t", "First"))
        assert first.href and not first.existing and len(sim.tasks(UPN)) == 1, first
        sim.drop_next_response_after_commit()  # the POST (list known, index read)
        second = await dst.put(cal, "t2@t", vtodo("t2@t", "Second"))
        assert second.existing and second.existing.startswith("todo/lists/"), second
        assert len(sim.tasks(UPN)) == 2
    finally:
        await dst.close()


async def test_a_lost_answer_with_nothing_made_is_raised() -> None:
    asked: list[bool] = []

    async def find(fresh: bool) -> str | None:
        asked.append(fresh)
        return None

    async def post() -> tuple[str, dict[str, object]]:
        raise InDoubtError("answer lost")

    with pytest.raises(InDoubtError):
        await create_once(find, post, lambda href: None)
    assert asked == [False, True]
