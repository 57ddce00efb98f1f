"""Change stored endpoints and tenants, and the checks that catch common setup mistakes.

``port_security_problem`` and ``check_authority`` are pure: they look at what the admin
typed and say what is wrong with it, before anything is stored or dialled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import update

from mailtrek.errors import UsageError
from mailtrek.orchestrate.endpoints import (
    ADMIN_FORMATS,
    AUTHS,
    SECURITIES,
    Endpoint,
    Tenant,
    get_endpoint,
    get_tenant,
)
from mailtrek.orchestrate.home import Home
from mailtrek.state.orchestration import endpoints, tenants

WELL_KNOWN = {993: "ssl", 143: "starttls"}  # the IANA ports and what they speak
SECURE_WORDS = {"ssl": "implicit TLS (SSL)", "starttls": "STARTTLS", "none": "no TLS"}


@dataclass(frozen=True, slots=True)
class PortCheck:
    """What is odd about a port and security pair: ``fatal`` when it cannot work."""

    fatal: bool
    message: str
    hint: str


def port_security_problem(port: int, security: str, *, security_given: bool) -> PortCheck | None:
    """Return what is wrong with ``port`` spoken with ``security``, or None.

    993 speaks implicit TLS and 143 plain IMAP with STARTTLS: the other pairings cannot
    connect (fatal). Any other port with a security the admin did not choose (it came
    from a preset or the default) is worth a warning: test servers on high ports often
    speak plain IMAP or STARTTLS.
    """
    expected = WELL_KNOWN.get(port)
    if expected == "ssl" and security != "ssl":
        return PortCheck(True, f"port 993 speaks implicit TLS, not {SECURE_WORDS[security]}",
                         "use --security ssl, or the server's STARTTLS port (usually 143)")
    if expected == "starttls" and security == "ssl":
        return PortCheck(True, "port 143 speaks plain IMAP (with STARTTLS), not implicit TLS",
                         "use --security starttls, or port 993 for implicit TLS")
    if expected is None and not security_given:
        return PortCheck(False, f"port {port} is used with {SECURE_WORDS[security]}, which came from "
                                "the preset or default, not from --security",
                         "if the server speaks plain IMAP or STARTTLS on this port, give --security "
                         "starttls or none")
    return None


def check_authority(url: str, tenant_id: str) -> tuple[str, list[str]]:
    """Return the authority URL to store and notes for the admin; raise UsageError when unusable.

    An authority is ``https://HOST/TENANT``: a URL without the tenant gets ``tenant_id``
    appended (with a note); a different tenant in the path is refused, since tokens would
    come from another directory than the one named.
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise UsageError(f"--m365-authority must be an https:// URL: {url!r}",
                         hint="for example https://login.microsoftonline.com/YOUR-TENANT-ID")
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        fixed = f"https://{parts.netloc}/{tenant_id}"
        return fixed, [f"the authority names no tenant; using {fixed} (an authority is https://HOST/TENANT-ID)"]
    if segments[-1].lower() in ("common", "organizations", "consumers"):
        raise UsageError(f"--m365-authority ends in {segments[-1]!r}, which is not a tenant",
                         hint=f"app-only tokens need the tenant: https://{parts.netloc}/{tenant_id}")
    if segments[-1].lower() != tenant_id.lower():
        raise UsageError(f"--m365-authority names tenant {segments[-1]!r} but --tenant-id is {tenant_id!r}",
                         hint=f"use https://{parts.netloc}/{tenant_id}, or fix --tenant-id")
    return url.strip().rstrip("/"), []


ENDPOINT_FIELDS = ("host", "port", "security", "ca_file", "auth", "admin_format", "admin_user",
                   "admin_password_enc", "max_concurrent_migrations", "max_concurrent_incremental",
                   "connections_per_mailbox")


def edit_endpoint(home: Home, name: str, changes: dict[str, Any]) -> Endpoint:
    """Apply ``changes`` (None values ignored) to the stored endpoint ``name``; return it.

    Raises UsageError for an unknown field or value, or a port/security pair that cannot
    work. Running moves keep their settings; the next run uses the new ones.
    """
    ep = get_endpoint(home, name)
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = set(changes) - set(ENDPOINT_FIELDS)
    if unknown:
        raise UsageError(f"cannot change {', '.join(sorted(unknown))} of an endpoint")
    if not changes:
        raise UsageError(f"nothing to change on endpoint {name}", hint="see `mailtrek endpoint edit --help`")
    if "security" in changes:
        changes["security"] = str(changes["security"]).lower()
        if changes["security"] not in SECURITIES:
            raise UsageError(f"unknown --security {changes['security']!r}", hint="use ssl, starttls or none")
    if "auth" in changes and changes["auth"] not in AUTHS:
        raise UsageError(f"unknown --auth {changes['auth']!r}", hint="use password or xoauth2")
    if changes.get("admin_format") and changes["admin_format"] not in ADMIN_FORMATS:
        raise UsageError(f"unknown --admin-format {changes['admin_format']!r}",
                         hint=f"use one of {', '.join(ADMIN_FORMATS)}")
    for k in ("port", "max_concurrent_migrations", "max_concurrent_incremental", "connections_per_mailbox"):
        if k in changes and int(changes[k]) < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be at least 1")
    for k, v in changes.items():
        setattr(ep, k, v)
    problem = port_security_problem(ep.port, ep.security, security_given=True)
    if problem is not None and problem.fatal:
        raise UsageError(problem.message, hint=problem.hint)
    with home.engine.begin() as c:
        c.execute(update(endpoints).where(endpoints.c.name == name).values(**changes))
    return ep


TENANT_FIELDS = ("tenant_id", "client_id", "client_secret_enc", "authority", "graph_url", "ca_file")


def edit_tenant(home: Home, name: str, changes: dict[str, Any]) -> tuple[Tenant, list[str]]:
    """Apply ``changes`` (None values ignored) to the stored tenant ``name``; return it and notes."""
    t = get_tenant(home, name)
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = set(changes) - set(TENANT_FIELDS)
    if unknown:
        raise UsageError(f"cannot change {', '.join(sorted(unknown))} of a tenant")
    if not changes:
        raise UsageError(f"nothing to change on tenant {name}", hint="see `mailtrek tenant edit --help`")
    for k, v in changes.items():
        setattr(t, k, v)
    notes: list[str] = []
    if t.authority and ("authority" in changes or "tenant_id" in changes):
        t.authority, notes = check_authority(t.authority, t.tenant_id)
        changes["authority"] = t.authority
    if t.graph_url and urlsplit(t.graph_url).scheme != "https":
        raise UsageError(f"--graph-url must be an https:// URL: {t.graph_url!r}")
    return t, notes


def store_tenant(home: Home, t: Tenant) -> None:
    """Write every field of ``t`` over the stored tenant of the same name."""
    with home.engine.begin() as c:
        c.execute(update(tenants).where(tenants.c.name == t.name)
                  .values(**{k: getattr(t, k) for k in TENANT_FIELDS}))
