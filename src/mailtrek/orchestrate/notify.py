"""Status e-mails about batches, sent over SMTP to the batch's notify addresses.

Settings come from ``MAILTREK_SMTP_*`` variables, else ``HOME/smtp.json`` with the same
keys in lower case (host, port, security ssl|starttls|none, user, password_file, from,
ca_file). Without a host, notifications are only logged. Mail goes only to the notify
addresses, never into the migrated users' mailboxes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from mailtrek.errors import ConfigError
from mailtrek.secrets import read_secret_file, redact, remember

if TYPE_CHECKING:
    from mailtrek.orchestrate.batches import Batch
    from mailtrek.orchestrate.home import Home

log = logging.getLogger("mailtrek.notify")

EVENTS = {
    "Syncing": "started",
    "Synced": "initial sync done",
    "SyncedWithErrors": "sync done with errors",
    "Failed": "failed",
    "Stopped": "stopped",
    "Completed": "completed",
    "CompletedWithErrors": "completed with errors",
}


@dataclass(slots=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: str = "starttls"  # ssl | starttls | none
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "mailtrek@localhost"
    ca_file: str | None = None
    timeout: float = 30.0

    @classmethod
    def load(cls, home: Home | None) -> SmtpSettings | None:
        """Return the settings from the environment or ``HOME/smtp.json``; None when unset."""
        data: dict[str, object] = {}
        if home is not None and (home.path / "smtp.json").exists():
            try:
                data = json.loads((home.path / "smtp.json").read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(f"cannot read {home.path / 'smtp.json'}: {e}") from e
        for key in ("host", "port", "security", "user", "password_file", "from", "ca_file"):
            env = os.environ.get(f"MAILTREK_SMTP_{key.upper()}")
            if env:
                data[key] = env
        password = os.environ.get("MAILTREK_SMTP_PASSWORD")
        if not password and data.get("password_file"):
            password = read_secret_file(str(data["password_file"]))
        if not data.get("host"):
            return None
        security = str(data.get("security", "starttls"))
        if security not in ("ssl", "starttls", "none"):
            raise ConfigError(f"unknown SMTP security {security!r}", hint="use ssl, starttls or none")
        default_port = {"ssl": 465, "starttls": 587, "none": 25}[security]
        return cls(host=str(data["host"]), port=int(str(data.get("port", default_port))), security=security,
                   user=str(data["user"]) if data.get("user") else None, password=remember(password),
                   sender=str(data.get("from", "mailtrek@localhost")),
                   ca_file=str(data["ca_file"]) if data.get("ca_file") else None)


def cannot_mail(home: Home | None) -> str | None:
    """Return why batch e-mails cannot go out (no SMTP server configured), or None when they can."""
    if SmtpSettings.load(home) is not None:
        return None
    return ("no SMTP server is configured, so the notify addresses will get no mail; set MAILTREK_SMTP_HOST "
            "(or HOME/smtp.json) for the process that runs batches and check with `mailtrek notify test --to ADDR`")


def send_mail(settings: SmtpSettings, to: list[str], subject: str, body: str,
              attachments: Sequence[tuple[str, str, bytes]] = ()) -> None:
    """Send one message (blocking). Raises OSError/smtplib.SMTPException on failure."""
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="mailtrek.invalid")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to status mail
    msg.set_content(body)
    for name, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    ctx = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.security == "ssl":
        smtp = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout, context=ctx)
    else:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    with smtp:
        if settings.security == "starttls":
            smtp.starttls(context=ctx)
        if settings.user and settings.password:
            smtp.login(settings.user, settings.password)
        smtp.send_message(msg)


class Notifier:
    """Turns batch status changes into e-mails."""

    def __init__(self, settings: SmtpSettings | None) -> None:
        self.settings = settings
        self.sent = 0

    @classmethod
    def from_home(cls, home: Home) -> Notifier:
        return cls(SmtpSettings.load(home))

    async def batch_changed(self, home: Home, batch: Batch) -> None:
        """Mail ``batch``'s notify addresses about its current status; never raises."""
        from mailtrek.orchestrate.reports import batch_summary_text, render_csv

        event = EVENTS.get(batch.status, batch.status)
        subject = f"mailtrek: batch {batch.name} {event} ({batch.status})"
        if self.settings is None:
            log.warning("%s: NOT mailed to %s, no SMTP server is configured (set MAILTREK_SMTP_HOST; "
                        "check with `mailtrek notify test --to ADDR`)", subject, ", ".join(batch.notify))
            return
        body = batch_summary_text(home, batch.name)
        csv_bytes = render_csv(home, batch.name).encode()
        try:
            await asyncio.to_thread(send_mail, self.settings, batch.notify, subject, body,
                                    [(f"{batch.name}-users.csv", "text/csv", csv_bytes)])
            self.sent += 1
            log.info("mailed %s: %s", ", ".join(batch.notify), subject)
        except (OSError, smtplib.SMTPException) as e:
            log.warning("could not mail %s about batch %s: %s", ", ".join(batch.notify), batch.name,
                        redact(str(e)))
