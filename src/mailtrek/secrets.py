"""Encrypt stored credentials at rest, and keep secrets out of every string we print.

The key is a Fernet key read from ``MAILTREK_SECRET_KEY`` or from ``DIR/secret.key``
(created with mode 0600 on first use). Anything we decrypt or read from a password file
is registered with :func:`remember` so that :func:`redact` (and the logging filter
:class:`RedactingFilter`) can blank it wherever it shows up.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from mailtrek.errors import ConfigError

KEY_ENV = "MAILTREK_SECRET_KEY"
KEY_FILE = "secret.key"
MASK = "********"

_known: set[str] = set()
_lock = threading.Lock()


def remember(secret: str | None) -> str | None:
    """Register ``secret`` for redaction and return it unchanged."""
    # Very short strings would blank innocent text; they are weak secrets anyway.
    if secret and len(secret) >= 3:
        with _lock:
            _known.add(secret)
    return secret


def redact(text: str, extra: tuple[str, ...] | list[str] = ()) -> str:
    """Return ``text`` with every remembered secret (and ``extra``) replaced by a mask."""
    with _lock:
        secrets = sorted({*_known, *(s for s in extra if s)}, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks remembered secrets in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def load_key(home: Path) -> bytes:
    """Return the Fernet key: from the environment, else the key file (created 0600).

    Raises ConfigError when the key is malformed or the file cannot be written.
    """
    from cryptography.fernet import Fernet  # on first use: redacting needs no cryptography

    env = os.environ.get(KEY_ENV)
    if env:
        key = env.strip().encode()
    else:
        path = home / KEY_FILE
        if path.exists():
            key = path.read_bytes().strip()
        else:
            key = Fernet.generate_key()
            try:
                home.mkdir(parents=True, exist_ok=True)
                # O_EXCL: two processes starting at once must not overwrite each other's key.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path.read_bytes().strip()
            except OSError as e:
                raise ConfigError(f"cannot create key file {path}: {e.strerror}") from e
            with os.fdopen(fd, "wb") as f:
                f.write(key + b"\n")
    try:
        Fernet(key)
    except ValueError as e:
        raise ConfigError(
            "the secret key is not a valid Fernet key",
            hint=f"set {KEY_ENV} to the output of Fernet.generate_key(), or remove the key file",
        ) from e
    return key


class SecretBox:
    """Encrypts and decrypts credentials with one key."""

    def __init__(self, key: bytes) -> None:
        from cryptography.fernet import Fernet

        self._fernet = Fernet(key)

    def encrypt(self, secret: str) -> str:
        """Return the token for ``secret`` (text, safe to store)."""
        remember(secret)
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Return the secret of ``token``; raises ConfigError when the key does not fit."""
        from cryptography.fernet import InvalidToken

        try:
            secret = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise ConfigError(
                "a stored secret cannot be decrypted with this key",
                hint=f"use the key file or {KEY_ENV} the secret was stored with",
            ) from e
        remember(secret)
        return secret


def read_secret_file(path: str | os.PathLike[str]) -> str:
    """Return the first line of a password/secret file (without the newline)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read secret file {path}: {e.strerror}") from e
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise ConfigError(f"secret file {path} is empty")
    remember(secret)
    return secret
