"""Where common providers keep contacts and calendars, and how they want logins.

Data, not code. A preset names, per kind, the host (None: the admin's own server, for
self-hosted products) and the start path discovery begins at (``{user}`` is replaced by
the URL-quoted login). ``auth`` is ``password`` (app passwords where the provider
requires them) or ``oauth`` (a Bearer token: Google accepts nothing else). Each entry
cites the provider's page the URL comes from; "unverified" marks what no page confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from mailtrek.errors import UsageError
from mailtrek.pim.model import Kind
from mailtrek.stores.dav.address import DavAddress


@dataclass(frozen=True, slots=True)
class DavService:
    """One kind's service: host (None: the endpoint's own) and start path."""

    host: str | None
    path: str = "/"


@dataclass(frozen=True, slots=True)
class DavPreset:
    """How to reach one provider's CalDAV and CardDAV services."""

    name: str
    title: str
    calendar: DavService
    contacts: DavService
    auth: str = "password"  # password | oauth
    scopes: tuple[str, ...] = ()  # OAuth scopes (service accounts ask for these)
    hint: str = ""

    def service(self, kind: Kind) -> DavService:
        return self.calendar if kind == "calendar" else self.contacts

    def address(self, user: str, kind: Kind, host: str | None = None) -> DavAddress:
        """The ``dav+https`` address of ``user``'s ``kind`` service; ``host`` for a
        self-hosted product (UsageError without one)."""
        s = self.service(kind)
        where = s.host or host
        if not where:
            raise UsageError(f"the {self.title} preset needs the server's host name",
                             hint="give the endpoint's --host, or write the host in the "
                                  "dav+https:// address")
        path = s.path.replace("{user}", quote(user, safe="@"))
        return DavAddress("https", user, where, 443, path if path.endswith("/") else path + "/")

    def describe(self) -> str:
        """``caldav.icloud.com, contacts.icloud.com`` or ``(your host)/remote.php/dav/``."""
        where = [f"{s.host or '(your host)'}{s.path if s.path != '/' else ''}"
                 for s in (self.calendar, self.contacts)]
        return ", ".join(dict.fromkeys(where)) + (" (OAuth)" if self.auth == "oauth" else "")

    def origins(self, kinds: tuple[Kind, ...]) -> bool:
        """True when ``kinds`` live on more than one host (a store per kind is needed)."""
        return len({self.service(k).host for k in kinds}) > 1


GOOGLE_CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
GOOGLE_CONTACTS_SCOPE = "https://www.googleapis.com/auth/carddav"

DAV_PRESETS: dict[str, DavPreset] = {p.name: p for p in (
    # Google: CalDAV at apidata.googleusercontent.com/caldav/v2/{calid}/user (calid: the
    # address for the main calendar), OAuth 2.0 only, RFC 6578 sync after the first run
    # (developers.google.com/workspace/calendar/caldav/v2/guide). CardDAV: discovery from
    # https://www.googleapis.com/.well-known/carddav, OAuth 2.0 (RFC 6750 Bearer) only,
    # HTTPS only (developers.google.com/people/carddav). Workspace: a service account with
    # domain-wide delegation for both scopes.
    DavPreset("google", "Google (Calendar and Contacts)",
              DavService("apidata.googleusercontent.com", "/caldav/v2/{user}/user"),
              DavService("www.googleapis.com", "/.well-known/carddav"), auth="oauth",
              scopes=(GOOGLE_CALENDAR_SCOPE, GOOGLE_CONTACTS_SCOPE),
              hint="Google takes OAuth only: add the endpoint with --service-account-key "
                   f"and delegate {GOOGLE_CALENDAR_SCOPE} and {GOOGLE_CONTACTS_SCOPE}"),
    # iCloud: caldav.icloud.com (HTTPS, discovery from /.well-known/caldav, then the
    # principal) and contacts.icloud.com; third-party apps need app-specific passwords
    # (support.apple.com/en-us/102654; cli.nylas.com/guides/icloud-caldav-settings).
    DavPreset("icloud", "iCloud",
              DavService("caldav.icloud.com"), DavService("contacts.icloud.com"),
              hint="UserName is the Apple Account e-mail; Password an app-specific password "
                   "(account.apple.com > Sign-In and Security > App-Specific Passwords)"),
    # Fastmail: caldav.fastmail.com and carddav.fastmail.com with auto-discovery, app
    # passwords only (fastmail.com/help/technical/servernamesandports.html).
    DavPreset("fastmail", "Fastmail",
              DavService("caldav.fastmail.com"), DavService("carddav.fastmail.com"),
              hint="create an app password with CalDAV and CardDAV access for each user"),
    # Nextcloud: one DAV endpoint, https://HOST/remote.php/dav, principals under
    # principals/users/NAME (docs.nextcloud.com user_manual/pim/sync_android.html; the
    # nextcloud/server issue 39557 shows the calendars/USER/NAME layout).
    DavPreset("nextcloud", "Nextcloud",
              DavService(None, "/remote.php/dav/"), DavService(None, "/remote.php/dav/"),
              hint="with two-factor login, each user needs an app password (Settings > "
                   "Security > Devices & sessions)"),
    # SOGo: https://HOST/SOGo/dav/USER/ (Calendar/personal, Contacts/personal below it:
    # KDE kdav README "Tested with"; docs.mailcow.email client manual).
    DavPreset("sogo", "SOGo",
              DavService(None, "/SOGo/dav/{user}/"), DavService(None, "/SOGo/dav/{user}/"),
              hint="UserName is the SOGo login (often the e-mail address)"),
    # Zimbra: CalDAV and CardDAV under https://HOST/dav/ (principals at /principals/users/
    # USER in older releases: KDE kdav README); unverified against a current release.
    DavPreset("zimbra", "Zimbra",
              DavService(None, "/dav/"), DavService(None, "/dav/"),
              hint="the same login as IMAP; discovery goes on from the principal"),
)}


def get_dav_preset(name: str) -> DavPreset:
    """Return the DAV preset ``name``; UsageError listing the known ones."""
    try:
        return DAV_PRESETS[name.lower()]
    except KeyError:
        raise UsageError(f"no contacts/calendars preset {name!r}",
                         hint=f"known: {', '.join(sorted(DAV_PRESETS))}") from None


def preset_of_address(address: DavAddress) -> DavPreset | None:
    """The preset an address names as its host (``dav+https://alice@icloud/``), or None."""
    return DAV_PRESETS.get(address.host.lower()) if "." not in address.host else None
