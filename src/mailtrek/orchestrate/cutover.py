"""Is mail for a domain flowing to Microsoft 365 yet, and since when?

Reads the live MX, SPF and autodiscover records (dnspython; ``nameserver`` points it at
another server) and compares the MX with what the tenant expects: Graph's
``GET /domains/{domain}/serviceConfigurationRecords``. The MX target must not be built
from a pattern (new domains get ``<domain>.<random>.mx.microsoft``, m365.md A7); only
without a tenant do we fall back to recognising Microsoft's MX suffixes. The first time
a domain is seen switched is remembered in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dns.exception
import dns.resolver
from sqlalchemy import select

from mailtrek.orchestrate.home import Home, as_utc, utcnow
from mailtrek.resolver import resolver_for
from mailtrek.state.orchestration import mx_sightings
from mailtrek.state.portable import upsert_insert

MICROSOFT_MX_SUFFIXES = (".mail.protection.outlook.com", ".mx.microsoft")
SETTLE_HOURS = 72  # mail still arrives at the old MX until caches expire; wait before completing


@dataclass(slots=True)
class CutoverStatus:
    domain: str
    mx: list[tuple[int, str]] = field(default_factory=list)
    spf: list[str] = field(default_factory=list)
    autodiscover: list[str] = field(default_factory=list)
    expected_mx: list[str] = field(default_factory=list)
    expected_from: str = "tenant"  # "tenant" | "suffix" (no tenant given)
    switched: bool = False
    switched_since: datetime | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """True when mail has gone to Microsoft 365 for at least SETTLE_HOURS."""
        return self.settled_at(utcnow())

    def settled_at(self, when: datetime) -> bool:
        """True when, at ``when``, mail will have gone to the destination for SETTLE_HOURS."""
        return self.switched and self.switched_since is not None and \
            when - self.switched_since >= timedelta(hours=SETTLE_HOURS)

    @property
    def settles_at(self) -> datetime | None:
        """When the 72-hour clock runs out (None while not switched)."""
        return self.switched_since + timedelta(hours=SETTLE_HOURS) if self.switched_since else None

    @property
    def saw_old_mx(self) -> bool:
        """True only for a positive observation of mail going elsewhere: MX records seen,
        no lookup trouble, the expected MX known, and not all of them the destination's.
        An empty or failed look (another resolver, a timeout) proves nothing."""
        known = self.expected_from == "suffix" or bool(self.expected_mx)
        return bool(self.mx) and known and not self.switched and not any(
            p.startswith("MX lookup") for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain, "mx": [{"preference": p, "host": h} for p, h in self.mx],
            "spf": self.spf, "autodiscover": self.autodiscover, "expected_mx": self.expected_mx,
            "expected_from": self.expected_from, "switched": self.switched,
            "switched_since": self.switched_since.isoformat() if self.switched_since else None,
            "settled": self.settled, "problems": self.problems,
        }


def _norm(host: str) -> str:
    return host.rstrip(".").lower()


def read_dns(domain: str, resolver: dns.resolver.Resolver, status: CutoverStatus) -> None:
    """Fill MX, SPF and autodiscover of ``status`` from DNS; lookup trouble goes to problems."""
    def query(name: str, rtype: str) -> list[Any]:
        try:
            return list(resolver.resolve(name, rtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as e:
            status.problems.append(f"{rtype} lookup of {name} failed: {e.__class__.__name__}")
            return []

    status.mx = sorted((int(r.preference), _norm(r.exchange.to_text())) for r in query(domain, "MX"))
    for r in query(domain, "TXT"):
        text = b"".join(r.strings).decode(errors="replace")
        if text.lower().startswith("v=spf1"):
            status.spf.append(text)
    auto = f"autodiscover.{domain}"
    status.autodiscover = [_norm(r.target.to_text()) for r in query(auto, "CNAME")]


async def expected_mx_from_tenant(home: Home, tenant_name: str, domain: str) -> list[str]:
    """Return the MX hosts Microsoft 365 expects for ``domain`` (Graph serviceConfigurationRecords)."""
    from mailtrek.orchestrate.endpoints import get_tenant
    from mailtrek.orchestrate.specs import tenant_client

    client = tenant_client(home, get_tenant(home, tenant_name))
    try:
        records = [r async for r in client.pages("", f"domains/{domain}/serviceConfigurationRecords")]
    finally:
        await client.close()
    return sorted({_norm(r["mailExchange"]) for r in records
                   if r.get("recordType", "").lower() == "mx" and r.get("mailExchange")})


def decide(status: CutoverStatus) -> bool:
    """Return whether every MX host of the domain is one Microsoft 365 expects (pure)."""
    if not status.mx:
        return False
    hosts = {h for _, h in status.mx}
    if status.expected_from == "tenant":
        return bool(status.expected_mx) and hosts <= set(status.expected_mx)
    return all(h.endswith(MICROSOFT_MX_SUFFIXES) for h in hosts)


def next_since(since: datetime | None, status: CutoverStatus, now: datetime) -> datetime | None:
    """Return the new "first seen switched" time (pure).

    Only a positive observation starts or keeps the 72-hour clock: seeing the new MX
    starts it (or keeps it running); seeing the old MX resets it; a check that saw
    nothing useful (no records, a lookup failure, unknown expected MX) leaves it alone.
    """
    if status.switched:
        return since or now
    if status.saw_old_mx:
        return None
    return since


def remember_sighting(home: Home, status: CutoverStatus) -> None:
    """Record the check; keep the first time the domain was seen switched (see ``next_since``)."""
    now = utcnow()
    with home.engine.begin() as c:
        row = c.execute(select(mx_sightings).where(mx_sightings.c.domain == status.domain)).mappings().first()
        since = as_utc(row["switched_since"]) if row and row["switched_since"] else None
        since = next_since(since, status, now)
        values = {"domain": status.domain, "switched_since": since, "last_checked": now,
                  "last_mx": " ".join(h for _, h in status.mx)}
        stmt = upsert_insert(c, mx_sightings).values(**values)
        c.execute(stmt.on_conflict_do_update(index_elements=["domain"], set_=values))
    status.switched_since = since


async def check_cutover(home: Home, domain: str, *, tenant: str | None = None,
                        nameserver: str | None = None, expected_mx: list[str] | None = None) -> CutoverStatus:
    """Check ``domain`` and remember what was seen. Graph errors become problems, not exceptions."""
    import asyncio

    from mailtrek.errors import MailtrekError

    domain = _norm(domain)
    status = CutoverStatus(domain=domain)
    await asyncio.to_thread(read_dns, domain, resolver_for(nameserver), status)
    if expected_mx:
        status.expected_mx = sorted({_norm(h) for h in expected_mx})
    elif tenant:
        try:
            status.expected_mx = await expected_mx_from_tenant(home, tenant, domain)
            if not status.expected_mx:
                status.problems.append(f"tenant {tenant} lists no MX record for {domain}: is the domain added and verified?")
        except MailtrekError as e:
            status.problems.append(f"cannot read {domain}'s expected records from tenant {tenant}: {e}")
    else:
        status.expected_from = "suffix"
    status.switched = decide(status)
    remember_sighting(home, status)
    return status


async def completion_blockers(
    home: Home, batch: str, *, nameserver: str | None = None,
    expected_mx: list[str] | None = None, imap_hint: str = "give the expected MX",
    at: datetime | None = None,
) -> tuple[list[str], list[str]]:
    """Why completing ``batch`` now is unsafe: (DNS problems seen, reasons not to complete).

    One reason per domain of the batch's users whose MX does not point to the destination
    yet, or was switched less than SETTLE_HOURS ago. An IMAP destination without an
    expected MX cannot be checked: that is a reason too (``imap_hint`` says what to give).
    """
    from mailtrek.orchestrate.batches import get_batch, user_rows

    b = get_batch(home, batch)
    if b.tenant is None and not expected_mx:
        return [], [f"the destination is an IMAP endpoint: {imap_hint} to check the cutover"]
    problems: list[str] = []
    unsafe: list[str] = []
    for d in sorted({u["email"].rsplit("@", 1)[1] for u in user_rows(home, batch)}):
        st = await check_cutover(home, d, tenant=b.tenant, nameserver=nameserver,
                                 expected_mx=expected_mx)
        problems += st.problems
        when = at or utcnow()
        if not st.switched:
            mx = ", ".join(host for _, host in st.mx) or "none"
            seen = (f"; first seen switched {st.switched_since:%Y-%m-%d %H:%M} UTC, kept: this check saw "
                    "no MX to go by") if st.switched_since else ""
            unsafe.append(f"{d}: MX ({mx}) does not point to the destination yet{seen}")
        elif not st.settled_at(when):
            unsafe.append(f"{d}: MX switched at {st.switched_since:%Y-%m-%d %H:%M} UTC, less than "
                          f"{SETTLE_HOURS} hours ago; mail may still arrive at the old server; completion "
                          f"is possible from {st.settles_at:%Y-%m-%d %H:%M} UTC "
                          f"(or schedule it: `mailtrek batch complete {batch} --at {st.settles_at:%Y-%m-%dT%H:%M}`)")
    return problems, unsafe
