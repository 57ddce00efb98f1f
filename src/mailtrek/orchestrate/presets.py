"""Connection presets for common IMAP providers, with the limits they are known for.

Data, not code: each preset is a frozen dataclass. ``connections_per_account`` caps how
many IMAP connections mailtrek opens to one source mailbox; ``daily_download_mb`` is the
provider's bandwidth quota where one is published (a long "Syncing" is often this cap).
Sources are cited next to each entry; ``None`` means no published figure was found.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailtrek.errors import UsageError
from mailtrek.stores.dav.presets import DAV_PRESETS, DavPreset


@dataclass(frozen=True, slots=True)
class Preset:
    """How to reach one provider's IMAP service, and what it tolerates."""

    name: str
    title: str
    host: str | None  # None: the admin must give --host (self-hosted servers)
    port: int = 993
    security: str = "ssl"
    connections_per_account: int | None = None
    daily_download_mb: int | None = None
    admin_format: str | None = None  # dovecot | exchange | mirapoint
    hint: str = ""
    dav: str | None = None  # the contacts/calendars preset (stores/dav/presets.py), if any

    @property
    def dav_preset(self) -> DavPreset | None:
        """Where this provider keeps contacts and calendars (None: found by discovery)."""
        return DAV_PRESETS[self.dav] if self.dav else None


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # Gmail: 15 simultaneous IMAP connections per account (imapsync issue #61, FAQ.Gmail);
        # download 2,500 MB/day (support.google.com/a/answer/1071518, via m365.md C5).
        Preset("gmail", "Gmail", "imap.gmail.com", connections_per_account=15, daily_download_mb=2500,
               hint="each user needs 2-step verification and an app password in the CSV; "
                    "labels are handled by --gmail-labels (default: each message once, other "
                    "labels as categories, archived mail in Archive)", dav="google"),
        Preset("google-workspace", "Google Workspace", "imap.gmail.com", connections_per_account=15,
               daily_download_mb=2500,
               hint="IMAP must be enabled in the Admin console (Apps > Google Workspace > Gmail > "
                    "End User Access > POP and IMAP access); use app passwords, or XOAUTH2 with "
                    "a service account and domain-wide delegation (scope https://mail.google.com/)",
               dav="google"),
        # Yahoo/AOL: app passwords required for third-party IMAP (help.yahoo.com "Generate
        # third-party app passwords"); connection cap not published, 5 is a safe figure seen in practice.
        Preset("yahoo", "Yahoo Mail", "imap.mail.yahoo.com", connections_per_account=5,
               hint="generate an app password per user (Account security > App passwords)"),
        Preset("aol", "AOL Mail", "imap.aol.com", connections_per_account=5,
               hint="generate an app password per user (Account security > App passwords)"),
        # iCloud: app-specific passwords required (support.apple.com/en-us/102525).
        Preset("icloud", "iCloud Mail", "imap.mail.me.com", connections_per_account=5,
               hint="UserName is the iCloud address or name; Password an app-specific password",
               dav="icloud"),
        # Outlook.com: basic auth is off for consumer accounts (2024); XOAUTH2 is needed.
        Preset("outlook", "Outlook.com / Hotmail", "outlook.office365.com", connections_per_account=8,
               hint="Microsoft turned off password IMAP logins for Outlook.com; use --auth xoauth2"),
        # Zoho: IMAP must be enabled per account; app-specific password with 2FA (zoho.com/mail/help/imap-access.html).
        Preset("zoho", "Zoho Mail", "imap.zoho.com", connections_per_account=5,
               hint="enable IMAP access in Zoho settings; use imappro.zoho.com for paid organisations"),
        # Yandex: app passwords required since 2023 (yandex.com/support/id/authorization/app-passwords.html).
        Preset("yandex", "Yandex Mail", "imap.yandex.com", connections_per_account=5,
               hint="enable IMAP in Yandex settings and use an app password"),
        # GMX / web.de / Mail.com (1&1 group): IMAP must be switched on in settings first.
        Preset("gmx", "GMX", "imap.gmx.net", connections_per_account=5,
               hint="switch on 'POP3/IMAP access' in the GMX settings first"),
        Preset("webde", "WEB.DE", "imap.web.de", connections_per_account=5,
               hint="switch on 'POP3/IMAP access' in the WEB.DE settings first"),
        Preset("mailcom", "Mail.com", "imap.mail.com", connections_per_account=5,
               hint="IMAP access is a premium feature on Mail.com; switch it on in settings"),
        # Fastmail: app passwords required for IMAP (fastmail.help "App passwords").
        Preset("fastmail", "Fastmail", "imap.fastmail.com", connections_per_account=10,
               hint="create an app password with IMAP access for each user", dav="fastmail"),
        Preset("ionos", "IONOS (1&1)", "imap.ionos.com", connections_per_account=5,
               hint="use imap.ionos.de for German accounts"),
        # Self-hosted: the admin supplies the host; admin logins make incremental syncs survive
        # users changing their passwords (m365.md C4).
        Preset("zimbra", "Zimbra", None, connections_per_account=10,
               hint="Zimbra accepts admin logins with the SASL authorization id", dav="zimbra"),
        # Contacts/calendars servers whose mail (if any) is some IMAP server: the host is the
        # admin's; the DAV paths come from stores/dav/presets.py.
        Preset("nextcloud", "Nextcloud", None, connections_per_account=10, dav="nextcloud",
               hint="Nextcloud holds contacts and calendars only: batch create --items "
                    "calendars,contacts"),
        Preset("sogo", "SOGo", None, connections_per_account=10, dav="sogo",
               hint="SOGo serves mail from its IMAP server (often Dovecot) on the same host"),
        Preset("cpanel", "cPanel (Dovecot)", None, connections_per_account=10, admin_format="dovecot",
               hint="cPanel hosts run Dovecot: mail.<domain>:993"),
        Preset("dovecot", "Dovecot", None, connections_per_account=10, admin_format="dovecot",
               hint="with a master user, UserName 'user*admin' opens any mailbox"),
        # Courier has no admin login; Exchange's docs use UserRoot with virtual shared folders.
        Preset("courier", "Courier IMAP", None, connections_per_account=10,
               hint="no admin login: give each user's password, or UserRoot with shared folders"),
    )
}


def login_advice(preset: Preset, server_text: str) -> str | None:
    """Return the setting to change when ``preset``'s provider refuses a login, if known."""
    if preset.name in ("gmail", "google-workspace"):
        from mailtrek.stores.gmail.advice import google_login_advice

        return google_login_advice(server_text)
    return None


def get_preset(name: str) -> Preset:
    """Return the preset ``name``; raise UsageError listing the known ones."""
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}", hint=f"known presets: {', '.join(sorted(PRESETS))}") from None
