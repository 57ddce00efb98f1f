"""Measured copy rates per route, and the estimates made from them.

A route is a source host and a destination kind (``imap.example.com -> m365``). Each
finished run that copied enough messages adds its messages, bytes and seconds; an
estimate divides the work by the rate of the route's recent runs, in messages *and* in
bytes, and takes the slower of the two (small messages cost per message, big ones per
byte). Without a measurement it says so and uses :data:`ASSUMED_MESSAGES_PER_SECOND`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, insert, select

from mailtrek.state.admin import route_rates

MIN_MESSAGES = 10  # shorter runs measure the listing, not the copy
RECENT_RUNS = 10  # the rate of a route is the sum over its last runs
# About what one mailbox reached in a local trial (782 messages in 106 s, issue 15); chosen
# low, so the first estimate errs long rather than short.
ASSUMED_MESSAGES_PER_SECOND = 5.0


def route_key(source_host: str, destination: str) -> str:
    """Return the route name of ``source_host`` to ``destination`` ("m365" or an IMAP host)."""
    dest = destination.lower()
    return f"{source_host.lower()} -> {dest if dest == 'm365' else 'imap:' + dest}"


def batch_route(source_host: str, *, to_m365: bool, dest_host: str | None) -> str:
    """The route of a batch's moves: its source endpoint's host to Microsoft 365 (it has
    a tenant) or to its destination endpoint's host ("?" when it has neither)."""
    return route_key(source_host, "m365" if to_m365 else dest_host or "?")


@dataclass(frozen=True, slots=True)
class RouteRate:
    """What the recent runs of one route reached."""

    runs: int
    messages_per_second: float
    bytes_per_second: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """How long some work takes, and what the figure rests on."""

    seconds: float
    basis: str


def record_run(engine: Engine, route: str, messages: int, nbytes: int, seconds: float) -> bool:
    """Remember one run's rate; return False (nothing stored) for runs too short to measure."""
    if messages < MIN_MESSAGES or seconds <= 0:
        return False
    from mailtrek.orchestrate.home import utcnow

    with engine.begin() as c:
        c.execute(insert(route_rates).values(route=route, at=utcnow(), messages=messages, bytes=nbytes,
                                             seconds=seconds))
    return True


def measured_rate(engine: Engine, route: str) -> RouteRate | None:
    """Return the rate of ``route``'s last :data:`RECENT_RUNS` runs, or None when never measured."""
    q = (select(route_rates.c.messages, route_rates.c.bytes, route_rates.c.seconds)
         .where(route_rates.c.route == route).order_by(route_rates.c.id.desc()).limit(RECENT_RUNS))
    with engine.connect() as c:
        rows = c.execute(q).all()
    seconds = sum(r.seconds for r in rows)
    if not rows or seconds <= 0:
        return None
    return RouteRate(len(rows), sum(r.messages for r in rows) / seconds, sum(r.bytes for r in rows) / seconds)


def estimate(messages: int, nbytes: int, rate: RouteRate | None, *,
             byte_limit: float | None = None, byte_limit_name: str = "") -> Estimate:
    """Return how long copying ``messages`` (``nbytes``) takes at ``rate``, and why.

    ``byte_limit`` (bytes/s: a destination's upload cap, a provider's daily quota) caps
    the byte rate and is named in the basis when it is the binding one.
    """
    if rate is None:
        seconds = messages / ASSUMED_MESSAGES_PER_SECOND
        basis = f"no measurement yet: assumed {ASSUMED_MESSAGES_PER_SECOND:g} messages/s per mailbox"
        if byte_limit and nbytes / byte_limit > seconds:
            seconds, basis = nbytes / byte_limit, f"{basis}, limited by {byte_limit_name or 'a byte limit'}"
        return Estimate(seconds, basis)
    runs = f"from {rate.runs} earlier run{'s' if rate.runs != 1 else ''} on this route"
    per_message = messages / rate.messages_per_second if rate.messages_per_second > 0 else 0.0
    bps = min(rate.bytes_per_second, byte_limit) if byte_limit else rate.bytes_per_second
    per_byte = nbytes / bps if bps > 0 else 0.0
    basis = (f"{runs} ({rate.messages_per_second:.1f} messages/s, "
             f"{rate.bytes_per_second / 1048576:.2f} MiB/s)")
    if byte_limit and byte_limit < rate.bytes_per_second and per_byte > per_message:
        basis += f", limited by {byte_limit_name or 'a byte limit'}"
    return Estimate(max(per_message, per_byte), basis)
