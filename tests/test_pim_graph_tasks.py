"""Tasks (VTODO) from Radicale into Microsoft To Do (the simulator) through the Graph PIM
store: once, re-runnable, adoptable after a lost state, verified; what To Do cannot hold
(an hourly recurrence) listed with its reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailtrek.devtools.dav_load import Loader
from mailtrek.pim.memory import MemoryPimStore
from mailtrek.pim.model import KINDS
from mailtrek.pim.sync import copy_pim
from mailtrek.pim.verify import verify_pim
from mailtrek.sim import SimConfig, Simulator, UserSpec
from mailtrek.sim.testing import graph_client
from mailtrek.state.db import open_engine
from mailtrek.state.pim import PimState
from pim_graph_helpers import graph_store
from pim_helpers import BERLIN, store, vcalendar, vevent

UPN = "tasks@contoso.test"
NODO = "nodo@contoso.test"
TASK_LIST = (b'<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
             b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Tasks'
             b'</D:displayname><C:supported-calendar-component-set><C:comp name="VTODO"/>'
             b'</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>')


def vtodo(uid: str, summary: str, *extra: str) -> str:
    lines = "".join(f"{e}\r\n" for e in extra)
    return (f"BEGIN:VTODO\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\nSUMMARY:{summary}\r\n"
            f"{lines}END:VTODO\r\n")


TODOS = {  # in the calendar "Haushalt", beside an event
    "bills": vcalendar(vtodo("bills@t", "Rechnungen zahlen",
                             "DTSTART;TZID=Europe/Berlin:20240301T090000",
                             "DUE;TZID=Europe/Berlin:20240305T170000", "STATUS:IN-PROCESS",
                             "PRIORITY:1", "CATEGORIES:Geld,Haus",
                             "DESCRIPTION:Strom und Wasser",
                             "RRULE:FREQ=MONTHLY;COUNT=3",
                             "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER;RELATED=END:-PT1H\r\n"
                             "END:VALARM"), timezone=BERLIN),
    "done": vcalendar(vtodo("done@t", "Steuererklärung ✓", "DUE;VALUE=DATE:20240531",
                            "STATUS:COMPLETED", "COMPLETED:20240520T101500Z", "PRIORITY:9")),
    "plain": vcalendar(vtodo("plain@t", "Milch kaufen")),
    "hourly": vcalendar(vtodo("hourly@t", "Blumen gießen", "DTSTART:20240601T080000Z",
                              "DUE:20240601T090000Z", "RRULE:FREQ=HOURLY;INTERVAL=4")),
}
EVENT = vcalendar(vevent("party@t", "Hausparty", ":20240706T180000Z", ":20240706T230000Z"))
INBOX = {"call": vcalendar(vtodo("call@t", "Call the bank", "DUE:20240102T100000Z",
                                 "STATUS:NEEDS-ACTION", "PRIORITY:5"))}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(users=[UserSpec(UPN), UserSpec(NODO)])) as running:
        yield running


@pytest.fixture(scope="module")
def source(radicale):  # type: ignore[no-untyped-def]
    user, password = "tasks-src", "pw-tasks-src"
    radicale.add_user(user, password)
    with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
        home = load.make_collection("Haushalt", "calendar")
        for name, body in TODOS.items():
            assert load.put(home, f"{name}.ics", body, "calendar").status_code in (200, 201)
        assert load.put(home, "party.ics", EVENT, "calendar").status_code in (200, 201)
        tasks = f"/{user}/inbox-tasks/"  # a task list: MKCALENDAR for VTODO only
        r = load.client.request("MKCALENDAR", load.base_url + tasks, content=TASK_LIST)
        assert r.status_code in (200, 201), r.text
        for name, body in INBOX.items():
            assert load.put(tasks, f"{name}.ics", body, "calendar").status_code in (200, 201)
    return user, password


def _task(sim: Simulator, uid: str):  # type: ignore[no-untyped-def]
    found = [t for t in sim.tasks(UPN) if any(
        link.get("externalId") == uid for link in t.props.get("linkedResources") or [])]
    assert len(found) == 1, (uid, found)
    return found[0]


async def test_tasks_once_rerun_adopt_verify(radicale, source, sim: Simulator,  # type: ignore[no-untyped-def]
                                             tmp_path) -> None:
    user, password = source
    n_tasks = len(TODOS) + len(INBOX)
    src, dst = store(radicale, user, password), graph_store(sim, UPN)
    await src.connect()
    await dst.connect()
    try:
        state = PimState(open_engine(tmp_path / "s.db"), "tasks")
        report = await copy_pim(src, dst, state, ["calendar"])
        t = report.totals()
        assert (t["selected"], t["copied"], t["failed"]) == (n_tasks + 1, n_tasks + 1, 0), report
        assert len(sim.tasks(UPN)) == n_tasks and len(sim.events(UPN)) == 1

        # The mapping, as To Do holds it.
        bills = _task(sim, "bills@t").props
        assert (bills["title"], bills["status"], bills["importance"]) == (
            "Rechnungen zahlen", "inProgress", "high")
        assert bills["dueDateTime"] == {"dateTime": "2024-03-05T17:00:00",
                                        "timeZone": "W. Europe Standard Time"}
        assert bills["reminderDateTime"]["dateTime"] == "2024-03-05T16:00:00"
        assert bills["isReminderOn"] and bills["categories"] == ["Geld", "Haus"]
        assert bills["body"]["content"] == "Strom und Wasser"
        assert bills["recurrence"]["pattern"]["type"] == "absoluteMonthly"
        done = _task(sim, "done@t").props
        assert (done["status"], done["importance"]) == ("completed", "low")
        assert done["completedDateTime"]["dateTime"] == "2024-05-20T10:15:00"
        assert "recurrence" not in _task(sim, "hourly@t").props
        # The source's "Tasks" went to the mailbox's default list; "Haushalt" got its own.
        # A task-only source collection made no calendar.
        with graph_client(sim) as g:
            lists = g.get(f"/users/{UPN}/todo/lists").json()["value"]
            calendars = g.get(f"/users/{UPN}/calendars").json()["value"]
        assert sorted(x["displayName"] for x in lists) == ["Haushalt", "Tasks"]
        assert sorted(x["name"] for x in calendars) == ["Calendar", "Haushalt"]
        default = next(x for x in lists if x["wellknownListName"] == "defaultList")
        assert _task(sim, "call@t").folder_id == default["id"]

        # What To Do cannot hold is listed per item, with the reason.
        notes = {c.uid: c.notes for e in report.collections for c in e.changed}
        assert any("HOURLY" in x and "not a series" in x for x in notes["hourly@t"]), notes

        again = (await copy_pim(src, dst, state, ["calendar"])).totals()
        assert (again["copied"], again["skipped"]) == (0, n_tasks + 1)
        lost = (await copy_pim(src, dst, PimState(open_engine(tmp_path / "lost.db"), "tasks"),
                               ["calendar"])).totals()
        assert (lost["copied"], lost["adopted"], lost["failed"]) == (0, n_tasks + 1, 0), lost
        assert len(sim.tasks(UPN)) == n_tasks

        v = await verify_pim(src, dst, KINDS)
        assert v["ok"] and v["totals"]["matched"] == n_tasks + 1, v["problems"]

        # A task changed at the source (done now) is written over its copy, and verify
        # tells a different status apart.
        with Loader(radicale.base_url, user, password, verify=radicale.ssl_context()) as load:
            r = load.put(f"/{user}/Haushalt/", "plain.ics", vcalendar(vtodo(
                "plain@t", "Milch kaufen", "STATUS:COMPLETED")), "calendar")
            assert r.status_code in (200, 201, 204), r.text
        src._collections = None  # see the changed sync tokens
        t2 = (await copy_pim(src, dst, state, ["calendar"])).totals()
        assert (t2["copied"], t2["updated"]) == (1, 1), t2
        assert _task(sim, "plain@t").props["status"] == "completed"
        assert (await verify_pim(src, dst, KINDS))["ok"]
        with graph_client(sim) as g:
            plain = _task(sim, "plain@t")
            r = g.patch(f"/users/{UPN}/todo/lists/{plain.folder_id}/tasks/{plain.id}",
                        json={"status": "notStarted"})
            assert r.status_code == 200
        v2 = await verify_pim(src, dst, KINDS)
        assert not v2["ok"] and v2["problems"][0]["fields"] == ["series.status"], v2["problems"]
    finally:
        await src.close()
        await dst.close()


async def test_without_the_tasks_permission_each_task_is_reported_and_events_go_on(
        sim: Simulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """To Do answers 403 to an app without Tasks.ReadWrite.All: each task fails with that
    reason, the calendar's events are copied, and once granted a re-run brings the tasks."""
    src, dst = MemoryPimStore(), graph_store(sim, NODO)
    cal = src.add_collection("/cal/", "calendar", "Work")
    src.add(cal.href, "party.ics", EVENT)
    src.add(cal.href, "plain.ics", TODOS["plain"])
    await dst.connect()
    state = PimState(open_engine(tmp_path / "s.db"), "nodo")
    sim.deny_permission("Tasks.ReadWrite.All")
    try:
        report = await copy_pim(src, dst, state, KINDS)
    finally:
        sim.allow_permission("Tasks.ReadWrite.All")
    try:
        t = report.totals()
        assert (t["copied"], t["failed"]) == (1, 1), report
        [problem] = [p for e in report.collections for p in e.problems]
        assert "Tasks.ReadWrite.All" in problem.reason, problem
        assert len(sim.events(NODO)) == 1 and sim.tasks(NODO) == []
        t2 = (await copy_pim(src, dst, state, KINDS)).totals()
        assert (t2["copied"], t2["failed"]) == (1, 0), t2
        assert [x.props["title"] for x in sim.tasks(NODO)] == ["Milch kaufen"]
    finally:
        await dst.close()
