"""Shared bits of the contacts-and-calendars-into-Graph tests: the simulator's tenant,
the Graph PIM store, and recurrence compared by its occurrences."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailtrek.sim import Simulator
from mailtrek.stores.m365 import TenantConfig
from mailtrek.stores.m365.pim_store import GraphPimStore

TENANT_ENV = {"MAILTREK_M365_TENANT_ID": "contoso", "MAILTREK_M365_CLIENT_ID": "mailtrek-tests",
              "MAILTREK_M365_CLIENT_SECRET": "s3cr3t-value"}


def tenant(sim: Simulator) -> TenantConfig:
    return TenantConfig(tenant_id="contoso", client_id="mailtrek-tests",
                        client_secret="s3cr3t-value", authority=sim.authority(),
                        graph_url=f"{sim.base_url}/graph", ca_file=sim.ca_file)


def graph_store(sim: Simulator, upn: str) -> GraphPimStore:
    return GraphPimStore(upn, tenant(sim))


def m365_args(sim: Simulator) -> list[str]:
    return ["--m365-authority", sim.authority(), "--graph-url", f"{sim.base_url}/graph",
            "--dest-ca-file", str(sim.ca_file)]


def occurrences(body: bytes, limit: int = 600) -> list[str] | None:
    """The first ``limit`` start instants (UTC) of the series in ``body``; None without a
    series. EXDATE and overridden occurrences are compared apart (as fields)."""
    import icalendar
    from dateutil import rrule

    cal = icalendar.Calendar.from_ical(body)
    master = next((c for c in cal.walk("VEVENT") if c.get("RECURRENCE-ID") is None), None)
    if master is None or master.get("RRULE") is None:
        return None
    start = master["DTSTART"].dt
    first = start if isinstance(start, dt.datetime) else dt.datetime.combine(start, dt.time())
    rule = master["RRULE"]
    until = (rule.get("UNTIL") or [None])[0]
    text = ";".join(p for p in rule.to_ical().decode().split(";") if not p.startswith("UNTIL"))
    if until is not None and not isinstance(until, dt.datetime):
        until = dt.datetime.combine(until, dt.time(23, 59, 59))
    if until is not None and (until.tzinfo is None) != (first.tzinfo is None):
        until = until.replace(tzinfo=first.tzinfo)
    out: list[str] = []
    for when in rrule.rrulestr(text, dtstart=first):
        if until is not None and when > until:
            break
        out.append(when.astimezone(dt.UTC).isoformat() if when.tzinfo else when.isoformat())
        if len(out) >= limit:
            break
    return out


def same_except_rrule(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Field names that differ, the RRULE's text left out (compared by occurrences)."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key) or {}, b.get(key) or {}
        out += [f"{key}.{k}" for k in sorted(set(x) | set(y)) if k != "rrule"
                and x.get(k) != y.get(k)]
    return out
