"""Find the IMAP server of an e-mail address the way mail clients do, and probe it.

Sources, in order of trust: RFC 6186 SRV records (``_imaps._tcp``, ``_imap._tcp``), the
domain's own autoconfig document (Thunderbird's ``config-v1.1.xml``), the Thunderbird ISP
database, the MX records matched against the provider presets, and the ``imap.DOMAIN`` /
``mail.DOMAIN`` guesses. Every source is asked; a missing one is noted and the chain goes
on. Each candidate remembers every source that named it.

Every host name, for DNS answers and for HTTP alike, is resolved through one resolver:
the given ``nameserver`` (dnspython, A then AAAA), else the system's getaddrinfo. Connections
go to the resolved addresses, each tried in order until one answers, while TLS checks the
certificate against the host name. So ``--nameserver`` decides every address mailtrek talks
to, and tests never leave the loopback interface.

A probe is TCP, TLS with certificate verification, and CAPABILITY, made by the product's
own IMAP client (``ImapConnection``, told the resolved addresses); it logs in only when a
user is given. A certificate that does not verify marks the candidate failed, never
accepted. Candidates are ranked: working before failing, implicit TLS before STARTTLS
before plain text, then by the most trusted source. A plain-text candidate is probed and
shown but never chosen unless the admin allows it (``allow_plain``, ``--allow-plain``):
when the TLS candidates fail (a blocked 993, a STARTTLS a man in the middle stripped), an
autoconfig or ISP database entry with ``socketType plain`` would otherwise win and every
password of the migration would cross the network in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import shlex
import socket
import ssl
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from mailtrek.errors import (
    AuthenticationError,
    ConnectionFailedError,
    MailtrekError,
    ThrottledError,
    UsageError,
)
from mailtrek.orchestrate.csvfile import is_address
from mailtrek.orchestrate.presets import PRESETS
from mailtrek.orchestrate.provider_domains import preset_for_domain
from mailtrek.resolver import query, resolver_for
from mailtrek.secrets import redact, remember
from mailtrek.stores.imap.connection import ConnectParams, Credentials, ImapConnection
from mailtrek.stores.imap.dial import DialStep, hostport

DEFAULT_ISPDB_URL = "https://autoconfig.thunderbird.net/v1.1/"
SECURITY_RANK = {"ssl": 0, "starttls": 1, "none": 2}
# Lower is more trusted: the domain's own records beat third-party data beat guesses.
SOURCE_RANK = {"srv": 0, "autoconfig": 1, "ispdb": 2, "known": 3, "mx": 4, "guess": 5}
MAX_DOCUMENT = 256 * 1024  # a config-v1.1.xml is a few KB; refuse anything huge
MAX_REDIRECTS = 3

# MX host suffix -> preset. A domain whose mail is received by a provider is (almost
# always) hosted there, so its IMAP server is the provider's.
MX_PRESETS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("google.com", "googlemail.com"), "google-workspace"),
    (("yahoodns.net",), "yahoo"),
    (("mail.protection.outlook.com", "mx.microsoft"), "outlook"),
    (("zoho.com", "zoho.eu", "zoho.in", "zohomail.com"), "zoho"),
    (("mail.icloud.com",), "icloud"),
    (("messagingengine.com",), "fastmail"),
    (("yandex.net", "yandex.ru"), "yandex"),
    (("gmx.net", "gmx.com", "gmx.de"), "gmx"),
    (("web.de",), "webde"),
    (("mail.com",), "mailcom"),
    (("ionos.com", "ionos.de", "kundenserver.de", "1and1.com", "perfora.net"), "ionos"),
)
_HOST = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")
_SOCKET_TYPES = {"ssl": "ssl", "tls": "ssl", "starttls": "starttls", "plain": "none"}


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Where discovery looks and whom it trusts."""

    nameserver: str | None = None  # IP[:PORT]; None: the system's resolver
    ca_file: str | None = None  # replaces the system roots for HTTPS and IMAP TLS
    ispdb_url: str = DEFAULT_ISPDB_URL  # the domain is appended
    https_port: int | None = None  # port of the domain's own autoconfig URLs (tests)
    timeout: float = 5.0
    probe: bool = True
    allow_plain: bool = False  # a plain-text candidate may be the best one


@dataclass(slots=True)
class ProbeStep:
    name: str  # dns | tcp | tls | capabilities | login
    ok: bool
    detail: str


@dataclass(slots=True)
class Candidate:
    """One way to reach the IMAP server, with every source that named it."""

    host: str
    port: int
    security: str  # ssl | starttls | none
    sources: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)  # keys of SOURCE_RANK
    preset: str | None = None
    username: str | None = None  # the login form the source documents
    steps: list[ProbeStep] = field(default_factory=list)
    probed: bool = False
    notes: list[str] = field(default_factory=list)  # per-address connection failures

    @property
    def ok(self) -> bool:
        return self.probed and bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def certificate_rejected(self) -> bool:
        return any(s.name == "tls" and not s.ok and "certificate" in s.detail for s in self.steps)

    def rank(self) -> tuple[int, int, int, str, int]:
        return (0 if self.ok else 1, SECURITY_RANK[self.security],
                min((SOURCE_RANK[k] for k in self.kinds), default=9), self.host, self.port)

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "security": self.security, "ok": self.ok,
                "probed": self.probed, "preset": self.preset, "username": self.username,
                "sources": self.sources, "certificate_rejected": self.certificate_rejected,
                "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.steps],
                "notes": self.notes}


@dataclass(slots=True)
class Discovery:
    """What discovery found for one address: candidates (best first) and per-source notes."""

    address: str
    domain: str
    candidates: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what each source said, found or not
    allow_plain: bool = False

    @property
    def best(self) -> Candidate | None:
        return next((c for c in self.candidates if c.ok and self.usable(c)), None)

    def usable(self, c: Candidate) -> bool:
        """False for a plain-text candidate unless plain text was allowed."""
        return self.allow_plain or c.security != "none"

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {"address": self.address, "domain": self.domain, "notes": self.notes,
                "best": best.as_dict() if best else None,
                "candidates": [c.as_dict() for c in self.candidates]}


def endpoint_add_command(c: Candidate, name: str, ca_file: str | None = None) -> str:
    """Return the `mailtrek endpoint add` command line that stores candidate ``c``."""
    args = ["mailtrek", "endpoint", "add", name, "--host", c.host, "--port", str(c.port),
            "--security", c.security]
    if c.preset:
        args += ["--preset", c.preset]
    if ca_file:
        args += ["--ca-file", ca_file]
    return shlex.join(args)


# -- the resolver ------------------------------------------------------------------------
class Lookup:
    """DNS queries through one resolver; every failure becomes an empty answer and a reason."""

    def __init__(self, config: DiscoveryConfig) -> None:
        self.resolver = resolver_for(config.nameserver, timeout=config.timeout)
        # Without --nameserver, host addresses come from getaddrinfo like any client's
        # (hosts file, the system's IPv6/IPv4 order); with it, from that server only.
        self.system = not config.nameserver

    def query(self, name: str, rtype: str) -> tuple[list[Any], str | None]:
        return query(self.resolver, name, rtype)

    def addresses(self, host: str) -> tuple[list[str], str | None]:
        """Return the addresses of ``host`` in connection order (an IP literal is its own).

        With a configured name server: its A then AAAA answers. Otherwise: getaddrinfo's
        answer, IPv4 and IPv6 in the order the system prefers.
        """
        with contextlib.suppress(ValueError):
            return [str(ipaddress.ip_address(host))], None
        if self.system:
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as e:
                return [], f"{host} does not resolve ({getattr(e, 'strerror', None) or e})"
            found = list(dict.fromkeys(str(i[4][0]) for i in infos))
            return found, None if found else f"{host} has no address"
        out: list[str] = []
        reasons = []
        for rtype in ("A", "AAAA"):
            answers, why = self.query(host, rtype)
            out += [a.address for a in answers]
            if why:
                reasons.append(why)
        return out, None if out else (reasons[0] if reasons else f"{host} has no address")


# -- the sources ---------------------------------------------------------------------------
def _srv(lookup: Lookup, domain: str) -> tuple[list[Candidate], list[str]]:
    found, notes = [], []
    for service, security in (("_imaps._tcp", "ssl"), ("_imap._tcp", "starttls")):
        name = f"{service}.{domain}"
        answers, why = lookup.query(name, "SRV")
        if why:
            notes.append(f"SRV {name}: nothing ({why})")
            continue
        for a in sorted(answers, key=lambda r: (r.priority, -r.weight)):
            target = str(a.target).rstrip(".")
            if not target:  # RFC 2782: "." means the service is decidedly not available
                notes.append(f"SRV {name}: the domain says there is no such service")
                continue
            found.append(Candidate(target, int(a.port), security, [f"SRV {name} -> {target}:{a.port}"], {"srv"}))
            notes.append(f"SRV {name}: {target}:{a.port} (priority {a.priority})")
    return found, notes


def _fetch(lookup: Lookup, config: DiscoveryConfig, url: str) -> tuple[bytes | None, str]:
    """GET ``url`` over HTTPS with our resolver; return (body, what happened)."""
    ctx = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else ssl.create_default_context()
    with httpx.Client(verify=ctx, trust_env=False, timeout=config.timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname:
                return None, f"refused non-HTTPS URL {url}"
            addrs, why = lookup.addresses(parts.hostname)
            if not addrs:
                return None, f"{parts.hostname} does not resolve ({why})"
            r, what = _get_any(client, parts, addrs)
            if r is None:
                return None, what
            if r.is_redirect and "location" in r.headers:
                url = str(httpx.URL(url).join(r.headers["location"]))
                continue
            if r.status_code != 200:
                return None, f"HTTP {r.status_code}"
            if len(r.content) > MAX_DOCUMENT:
                return None, f"document larger than {MAX_DOCUMENT} bytes: ignored"
            return r.content, "found"
    return None, "too many redirects"


def _get_any(client: httpx.Client, parts: Any, addrs: list[str]) -> tuple[httpx.Response | None, str]:
    """GET ``parts`` from the first of ``addrs`` that accepts a connection; (response, why not)."""
    failures = []
    for ip in addrs:
        netloc = (f"[{ip}]" if ":" in ip else ip) + (f":{parts.port}" if parts.port else "")
        try:
            return client.get(urlunsplit(parts._replace(netloc=netloc)),
                              headers={"Host": parts.netloc, "Accept": "application/xml, text/xml"},
                              extensions={"sni_hostname": parts.hostname}), "found"
        except httpx.ConnectError as e:
            cause: BaseException | None = e
            while cause is not None:
                if isinstance(cause, ssl.SSLCertVerificationError):
                    return None, f"certificate of {parts.hostname} not trusted ({cause.verify_message}): ignored"
                cause = cause.__cause__ or cause.__context__
            failures.append(f"{ip}: {e}")  # this address does not answer: try the next one
        except httpx.HTTPError as e:
            return None, f"HTTP error from {parts.netloc}: {type(e).__name__} {e}"
    return None, f"cannot connect to {parts.netloc} ({'; '.join(failures)})"


def parse_autoconfig(document: bytes, address: str) -> list[tuple[str, int, str, str | None]]:
    """Return (host, port, security, username) of each IMAP server in a config-v1.1.xml.

    Raises ValueError for a document that is not one. DTDs are refused outright, so no
    entity expansion can happen.
    """
    if b"<!DOCTYPE" in document.upper() or b"<!ENTITY" in document.upper():
        raise ValueError("document declares a DTD")
    try:
        root = ET.fromstring(document)
    except ET.ParseError as e:
        raise ValueError(f"not XML: {e}") from None
    if root.tag != "clientConfig":
        raise ValueError(f"root element is <{root.tag}>, not <clientConfig>")
    local, _, domain = address.partition("@")
    subst = {"%EMAILADDRESS%": address, "%EMAILLOCALPART%": local, "%EMAILDOMAIN%": domain}

    def fill(text: str | None) -> str | None:
        if text is None:
            return None
        text = text.strip()
        for k, v in subst.items():
            text = text.replace(k, v)
        return text

    out = []
    for server in root.iter("incomingServer"):
        if (server.get("type") or "").lower() != "imap":
            continue
        host = fill(server.findtext("hostname")) or ""
        port_text = (server.findtext("port") or "").strip()
        security = _SOCKET_TYPES.get((server.findtext("socketType") or "").strip().lower())
        if not _HOST.match(host) or not port_text.isdigit() or not 0 < int(port_text) < 65536 or not security:
            continue  # an entry we cannot trust to be a server; skip rather than guess
        out.append((host.rstrip(".").lower(), int(port_text), security, fill(server.findtext("username"))))
    return out


def _documents(lookup: Lookup, config: DiscoveryConfig, address: str, domain: str
               ) -> tuple[list[Candidate], list[str]]:
    port = f":{config.https_port}" if config.https_port else ""
    urls = [("autoconfig", f"https://autoconfig.{domain}{port}/mail/config-v1.1.xml?emailaddress={address}"),
            ("autoconfig", f"https://{domain}{port}/.well-known/autoconfig/mail/config-v1.1.xml"),
            ("ispdb", config.ispdb_url.rstrip("/") + "/" + domain)]
    found, notes = [], []
    for kind, url in urls:
        label = "ISP database" if kind == "ispdb" else "autoconfig"
        shown = url.split("?", 1)[0]
        body, what = _fetch(lookup, config, url)
        if body is None:
            notes.append(f"{label} {shown}: nothing ({what})")
            continue
        try:
            servers = parse_autoconfig(body, address)
        except ValueError as e:
            notes.append(f"{label} {shown}: unusable ({e})")
            continue
        if not servers:
            notes.append(f"{label} {shown}: no IMAP server listed")
        for host, p, security, user in servers:
            found.append(Candidate(host, p, security, [f"{label} {shown}"], {kind}, username=user))
            notes.append(f"{label} {shown}: {host}:{p} ({security})")
    return found, notes


def preset_for_mx(mx_host: str) -> str | None:
    """Return the preset whose provider receives mail at ``mx_host``, else None."""
    h = mx_host.rstrip(".").lower()
    for suffixes, preset in MX_PRESETS:
        if any(h == s or h.endswith("." + s) for s in suffixes):
            return preset
    return None


def _known(domain: str) -> tuple[list[Candidate], list[str]]:
    """The preset that serves ``domain`` by mailtrek's own data (no network)."""
    name = preset_for_domain(domain)
    p = PRESETS.get(name) if name else None
    if p is None or p.host is None:
        return [], [f"known domains: {domain} is not a listed provider domain"]
    return ([Candidate(p.host, p.port, p.security,
                       [f"known domain {domain} -> preset {p.name}"], {"known"}, preset=p.name)],
            [f"known domains: {domain} -> {p.title} (preset {p.name}, mailtrek's own list)"])


def _mx(lookup: Lookup, domain: str) -> tuple[list[Candidate], list[str]]:
    answers, why = lookup.query(domain, "MX")
    if why:
        return [], [f"MX {domain}: nothing ({why})"]
    found, notes = [], []
    for a in sorted(answers, key=lambda r: r.preference):
        mx = str(a.exchange).rstrip(".").lower()
        name = preset_for_mx(mx)
        p = PRESETS.get(name) if name else None
        if p is None or p.host is None:
            notes.append(f"MX {domain}: {mx} (no known provider)")
            continue
        notes.append(f"MX {domain}: {mx} -> {p.title} (preset {p.name})")
        found.append(Candidate(p.host, p.port, p.security, [f"MX {mx} -> preset {p.name}"], {"mx"},
                               preset=p.name))
    return found, notes


def _guesses(lookup: Lookup, domain: str) -> tuple[list[Candidate], list[str]]:
    found, notes = [], []
    for host in (f"imap.{domain}", f"mail.{domain}"):
        addrs, why = lookup.addresses(host)
        if not addrs:
            notes.append(f"guess {host}: nothing ({why})")
            continue
        notes.append(f"guess {host}: resolves to {', '.join(addrs)}")
        found += [Candidate(host, 993, "ssl", [f"guess {host}"], {"guess"}),
                  Candidate(host, 143, "starttls", [f"guess {host}"], {"guess"})]
    return found, notes


def merge(candidates: list[Candidate]) -> list[Candidate]:
    """Merge candidates naming the same (host, port, security), keeping every source."""
    out: dict[tuple[str, int, str], Candidate] = {}
    for c in candidates:
        key = (c.host.lower().rstrip("."), c.port, c.security)
        have = out.get(key)
        if have is None:
            out[key] = Candidate(key[0], c.port, c.security, list(c.sources), set(c.kinds), c.preset, c.username)
            continue
        have.sources += [s for s in c.sources if s not in have.sources]
        have.kinds |= c.kinds
        have.preset = have.preset or c.preset
        have.username = have.username or c.username
    return list(out.values())


# -- probing -----------------------------------------------------------------------------
def probe_candidate(c: Candidate, lookup: Lookup, config: DiscoveryConfig,
                    user: str | None = None, password: str | None = None) -> Candidate:
    """Probe ``c`` in place (DNS, TCP, TLS, capabilities, login if ``user``) and return it.

    DNS is ours (``lookup``); the rest is the product's own client (``ImapConnection``)
    connecting to the resolved addresses while TLS checks the certificate against the
    host name. TCP tries every address in order until one answers; the addresses that
    did not are listed in ``c.notes``. Once a server answers, its TLS and IMAP answers
    decide: a bad certificate is never retried elsewhere.
    """
    remember(password)
    c.probed, c.steps, c.notes = True, [], []
    addrs, why = lookup.addresses(c.host)
    if not _step(c, "dns", bool(addrs), f"{c.host} resolves to {', '.join(addrs)}" if addrs else f"{why}"):
        return c
    asyncio.run(_probe(c, tuple(addrs), config, user, password))
    return c


def _step(c: Candidate, name: str, ok: bool, detail: str) -> bool:
    c.steps.append(ProbeStep(name, ok, redact(detail)))
    return ok


async def _probe(c: Candidate, addrs: tuple[str, ...], config: DiscoveryConfig,
                 user: str | None, password: str | None) -> None:
    """TCP, TLS, capabilities and a login (if ``user``) through ``ImapConnection``."""
    conn = ImapConnection(ConnectParams(c.host, c.port, c.security, ca_file=config.ca_file,
                                        timeout=config.timeout, connect_timeout=config.timeout,
                                        addresses=addrs), label="discovery")
    conn.on_step = lambda s: _connect_step(c, s)
    t0 = time.monotonic()
    try:
        try:
            await conn.open()
        except MailtrekError as e:
            if all(s.ok for s in c.steps):  # connected; no IMAP greeting (or it went away)
                _step(c, "capabilities", False, f"no IMAP greeting: {e.message}")
            return
        if c.security == "none":
            _step(c, "tls", True, "no TLS: passwords would cross the network in clear")
        caps = sorted(conn.capabilities)
        if "IMAP4REV1" not in caps:
            _step(c, "capabilities", False, f"not an IMAP4rev1 server: {' '.join(caps)}")
            return
        _step(c, "capabilities", True, " ".join(
            x for x in caps if x in ("IDLE", "CONDSTORE", "QRESYNC", "UIDPLUS", "SPECIAL-USE", "MOVE")
            or x.startswith("AUTH=")) or "IMAP4rev1")
        if user is not None:
            try:
                await conn.login(Credentials(user, password or ""))
                _step(c, "login", True, f"logged in as {user}")
            except (AuthenticationError, ThrottledError) as e:
                _step(c, "login", False, f"login as {user} refused: {e.message}")
    except MailtrekError as e:
        _step(c, "capabilities", False, f"connection dropped after {time.monotonic() - t0:.1f} s: {e.message}")
    finally:
        await conn.close()


def _connect_step(c: Candidate, s: DialStep) -> None:
    """Record a TCP or TLS step of ``ImapConnection.open`` in discovery's words."""
    if s.name == "tcp":
        c.notes += [f"cannot connect to {f}" for f in s.failures]
        if s.ok and s.address is not None:
            _step(c, "tcp", True, f"connected to {hostport(s.address, c.port)}"
                  + (f" (after {len(s.failures)} address(es) that did not answer)" if s.failures else ""))
        elif not s.ok:
            tried = "; ".join(s.failures)
            _step(c, "tcp", False, f"cannot connect to {tried}" if len(s.failures) == 1
                  else f"no address of {c.host} answered on port {c.port}: {tried}")
    elif s.name == "tls":
        how = "STARTTLS" if s.starttls else "implicit TLS"
        if s.ok:
            _step(c, "tls", True, f"{how}, certificate valid for {c.host}")
        elif s.problem == "no-starttls":
            _step(c, "tls", False, "the server offers no STARTTLS on this port")
        elif s.problem == "certificate":
            why = getattr(s.error.__cause__ if s.error else None, "verify_message", None) or s.error
            _step(c, "tls", False, f"certificate not trusted for {c.host}: {why}")
        else:
            cause = s.error.__cause__ if s.error is not None else None
            why = getattr(cause, "reason", None) or cause or s.error
            _step(c, "tls", False, f"TLS failed: {why}")


# -- the whole chain ---------------------------------------------------------------------
def discover(address: str, config: DiscoveryConfig | None = None, *,
             user: str | None = None, password: str | None = None) -> Discovery:
    """Ask every source about ``address``'s domain, probe the candidates, rank them.

    Never raises for network trouble (it becomes a note or a failed step); raises
    UsageError when ``address`` is not an e-mail address.
    """
    config = config or DiscoveryConfig()
    address = address.strip()
    if not is_address(address):
        raise UsageError(f"{address!r} is not an e-mail address", hint="give an address such as user@example.com")
    domain = address.rsplit("@", 1)[1].lower().rstrip(".")
    lookup = Lookup(config)
    result = Discovery(address, domain, allow_plain=config.allow_plain)
    found: list[Candidate] = []
    for source in (lambda: _srv(lookup, domain), lambda: _documents(lookup, config, address, domain),
                   lambda: _known(domain), lambda: _mx(lookup, domain),
                   lambda: _guesses(lookup, domain)):
        cands, notes = source()
        found += cands
        result.notes += notes
    result.candidates = merge(found)
    if config.probe and result.candidates:
        with ThreadPoolExecutor(max_workers=min(8, len(result.candidates))) as pool:
            list(pool.map(lambda c: probe_candidate(c, lookup, config, user, password), result.candidates))
    result.candidates.sort(key=Candidate.rank)
    return result


# -- a source endpoint for a batch ---------------------------------------------------------
PLAIN_REFUSED = "answers, but without TLS: not used unless you pass --allow-plain"
SOURCE_LABELS = {"srv": "SRV", "autoconfig": "autoconfig", "ispdb": "ISPDB",
                 "known": "known provider domain", "mx": "MX preset", "guess": "guess"}
MAX_PARALLEL_DOMAINS = 4  # discovery already probes its candidates in parallel


class DiscoveryFailedError(ConnectionFailedError):
    """No usable IMAP server was found for a domain (exit 4, like `endpoint discover`)."""

    retryable = False


def source_labels(c: Candidate) -> str:
    """Return the kinds of source that named ``c``, most trusted first (``SRV, guess``)."""
    return ", ".join(SOURCE_LABELS[k] for k in sorted(c.kinds, key=lambda k: SOURCE_RANK[k]))


def server_key(host: str, port: int, security: str) -> tuple[str, int, str]:
    """Return the identity of an IMAP server as endpoints and candidates compare it."""
    return host.lower().rstrip("."), port, security.lower()


def discover_domains(addresses: list[str], config: DiscoveryConfig) -> list[Discovery]:
    """Run discovery once per domain of ``addresses`` (with its first address), in order.

    Raises UsageError when an entry is not an e-mail address.
    """
    firsts: dict[str, str] = {}
    for a in addresses:
        if not is_address(a.strip()):
            raise UsageError(f"{a!r} is not an e-mail address")
        firsts.setdefault(a.strip().rsplit("@", 1)[1].lower().rstrip("."), a.strip())
    if not firsts:
        raise UsageError("no addresses to discover a server for")
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_DOMAINS, len(firsts))) as pool:
        return list(pool.map(lambda a: discover(a, config), firsts.values()))


def _tried(d: Discovery) -> list[str]:
    lines = [f"  {n}" for n in d.notes]
    for c in d.candidates:
        failed = next((s for s in c.steps if not s.ok), None)
        why = f"{failed.name}: {failed.detail}" if failed else "not probed"
        if c.ok and not d.usable(c):
            why = PLAIN_REFUSED
        lines.append(f"  candidate {c.host}:{c.port} ({c.security}) from {source_labels(c)}: {why}")
    return lines


def choose_source(found: list[Discovery]) -> Candidate:
    """Return the one server that every domain's discovery agrees on (its best candidate).

    Raises DiscoveryFailedError naming what was tried when a domain has no working
    candidate, and UsageError listing the servers when the domains' best servers differ.
    """
    missing = [d for d in found if d.best is None]
    if missing:
        lines = []
        for d in missing:
            lines.append(f"no usable IMAP server found for {d.domain}; tried:")
            lines += _tried(d)
        raise DiscoveryFailedError(
            "\n".join(lines),
            hint="store the server yourself with `mailtrek endpoint add NAME --host HOST` and pass --endpoint NAME")
    bests = {d.domain: d.best for d in found if d.best is not None}
    servers = {server_key(c.host, c.port, c.security) for c in bests.values()}
    if len(servers) > 1:
        listed = "; ".join(f"{dom} -> {c.host}:{c.port} ({c.security})" for dom, c in bests.items())
        raise UsageError(f"the CSV's domains are served by {len(servers)} different IMAP servers: {listed}",
                         hint="split the CSV per server, or name the source with --endpoint E (without --discover)")
    return next(iter(bests.values()))


def unique_endpoint_name(taken: set[str], domain: str) -> str:
    """Return an endpoint name derived from ``domain`` that is not in ``taken``."""
    from mailtrek.orchestrate.endpoints import MAX_NAME

    base = re.sub(r"[^A-Za-z0-9._-]+", "-", domain.lower()).strip("-.")[:MAX_NAME - 4] or "source"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


@dataclass(slots=True)
class SourceEndpoint:
    """The endpoint a discovered server maps to: a stored one reused, or a new one."""

    endpoint: Any  # mailtrek.orchestrate.endpoints.Endpoint
    candidate: Candidate
    domains: list[str]
    reused: bool  # an endpoint already stored for this server
    saved: bool = False  # stored by :func:`save_source` (False for reused and dry runs)


def source_endpoint(home: Any, found: list[Discovery], ca_file: str | None) -> SourceEndpoint:
    """Map the server every domain agrees on to a stored endpoint, or build a new one (not stored).

    Raises as :func:`choose_source`.
    """
    from mailtrek.orchestrate.endpoints import list_endpoints, make_endpoint

    best = choose_source(found)
    domains = [d.domain for d in found]
    stored = list_endpoints(home)
    key = server_key(best.host, best.port, best.security)
    for ep in stored:
        if server_key(ep.host, ep.port, ep.security) == key:
            return SourceEndpoint(ep, best, domains, reused=True)
    name = unique_endpoint_name({ep.name for ep in stored}, domains[0])
    ep = make_endpoint(name, host=best.host, port=best.port, security=best.security, ca_file=ca_file,
                       preset=best.preset)
    return SourceEndpoint(ep, best, domains, reused=False)


def save_source(home: Any, source: SourceEndpoint, attempts: int = 5) -> SourceEndpoint:
    """Store a new source endpoint (renaming it if the name was taken meanwhile); return it."""
    from mailtrek.orchestrate.endpoints import add_endpoint, list_endpoints

    if source.reused or source.saved:
        return source
    for _ in range(attempts):
        try:
            add_endpoint(home, source.endpoint)
            source.saved = True
            return source
        except UsageError:
            # Someone stored an endpoint of that name since we looked: take the next free one.
            source.endpoint.name = unique_endpoint_name({e.name for e in list_endpoints(home)},
                                                        source.domains[0])
    raise UsageError(f"could not store endpoint {source.endpoint.name!r}", hint="try again")
