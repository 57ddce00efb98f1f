"""The error tree. Every user-facing error carries its message and exit code.

    MailtrekError                      exit 10  (generic)
    ├── UsageError                     exit 2   bad arguments, bad URL, missing password
    │   ├── NotFoundError              exit 2   no such endpoint/tenant/batch/user (HTTP 404)
    │   └── ConflictError              exit 2   the name is taken, in use or busy (HTTP 409)
    ├── ConfigError                    exit 2   bad settings file / endpoint / tenant
    ├── AuthenticationError            exit 3   the server refused the credentials
    │   └── LoginUnavailableError      exit 3   refused for now ([UNAVAILABLE]): retried
    ├── ConnectionFailedError          exit 4   DNS, TCP, TLS handshake, certificate
    │   └── CertificateError           exit 4
    ├── ProtocolError                  exit 5   the server said something we cannot use
    ├── StoreError                     exit 6   a store refused an operation
    │   ├── ItemRejectedError          (skip this item, go on)
    │   ├── FolderRejectedError        (skip this folder, go on)
    │   └── QuotaExceededError         (the destination is full: stop this mailbox)
    ├── ThrottledError                 (retry after ``retry_after`` seconds)
    ├── TransientError                 (retry: dropped link, 5xx, timeout)
    └── StateError                     exit 7   the state database is unusable

Each class also carries the HTTP status the dashboard's API answers with
(``http_status``), beside its exit code, so no front end guesses from message text.

Lower-layer exceptions (ssl, socket, httpx) are translated at the store boundary so that
the sync layer only ever sees these. Anything else that escapes a command is a bug:
one line on stderr naming a log file with the traceback, exit 8 (``EXIT_INTERNAL``), so
a crash never looks like exit 1's "some messages were skipped".
"""

from __future__ import annotations


class MailtrekError(Exception):
    """Base of every error mailtrek raises on purpose."""

    exit_code = 10
    http_status = 500
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MailtrekError):
    exit_code = 2
    http_status = 400


class NotFoundError(UsageError):
    """A named object (endpoint, tenant, batch, user) does not exist."""

    http_status = 404


class ConflictError(UsageError):
    """The request clashes with what exists: a taken name, an object in use, work running."""

    http_status = 409


class ConfigError(MailtrekError):
    exit_code = 2
    http_status = 400


class AuthenticationError(MailtrekError):
    exit_code = 3
    http_status = 502  # the mail server refused: a bad gateway from the API's point of view


class LoginUnavailableError(AuthenticationError):
    """The server cannot log the mailbox in just now (RFC 5530 ``UNAVAILABLE``): ask again."""

    retryable = True


class ConnectionFailedError(MailtrekError):
    exit_code = 4
    http_status = 502
    retryable = True


class CertificateError(ConnectionFailedError):
    retryable = False


class ProtocolError(MailtrekError):
    exit_code = 5
    http_status = 502


class StoreError(MailtrekError):
    exit_code = 6
    http_status = 502


class ItemRejectedError(StoreError):
    """The destination refused one message; skip it with ``reason`` and go on."""

    def __init__(self, message: str, *, reason: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.reason = reason or message


class FolderRejectedError(StoreError):
    """The destination refused to create or open a folder."""


class QuotaExceededError(StoreError):
    """The destination mailbox is full or over an item-count limit."""


class TransientError(MailtrekError):
    """A failure that a retry may cure: dropped connection, timeout, 5xx."""

    retryable = True


class ThrottledError(TransientError):
    """The service asked us to slow down; wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class StateError(MailtrekError):
    exit_code = 7


# Exit codes for outcomes that are not exceptions.
EXIT_OK = 0
EXIT_INCOMPLETE = 1  # some messages skipped or failed; see the report
EXIT_INTERNAL = 8  # an unexpected error (a bug): the traceback is in a log file
