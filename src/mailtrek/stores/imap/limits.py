"""How much one IMAP server may make mailtrek hold, and for how long.

The server decides how big a literal is, how many untagged responses a command gets and
how long it keeps talking; an old buggy host, a compromised one or a man in the middle
can make each of them endless. These caps bound memory and time per command:

- a literal is read as its bytes arrive (memory follows what was received, never what
  was announced), and never beyond ``MAX_LITERAL``; a body FETCH asks for at most the
  run's ``--max-size`` per message (a bigger one is read past and skipped, not held);
- the untagged responses one command collects stop at ``max_responses`` of them and
  ``max_response_bytes`` bytes of text and literals (plus, for a body FETCH, one message
  of the allowed size);
- a command must be answered within ``command_timeout`` seconds of being sent, however
  steadily the server keeps talking meanwhile (the per-answer idle timeout restarts with
  every line, so alone it never ends a flood).

Crossing a cap fails the connection with a ``ProtocolError`` naming the cap and the
environment variable that raises it. The defaults are far above what any honest server
sends for a mailbox Microsoft 365 accepts (500,000 items), and below what would hurt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mailtrek.errors import ConfigError

MAX_RESPONSES_ENV = "MAILTREK_IMAP_MAX_RESPONSES"
MAX_RESPONSE_BYTES_ENV = "MAILTREK_IMAP_MAX_RESPONSE_BYTES"
COMMAND_TIMEOUT_ENV = "MAILTREK_IMAP_COMMAND_TIMEOUT"

# The hard ceiling of one literal, whatever else is allowed: above Exchange Online's
# largest message (150 MB) with room for encoding, far below what would exhaust memory.
MAX_LITERAL = 256 << 20
# A FETCH listing of a folder of 500,000 messages (the most Microsoft 365 migrates from one
# mailbox); each response held costs about 240 bytes, so a flood stops near 120 MB.
DEFAULT_MAX_RESPONSES = 500_000
DEFAULT_MAX_RESPONSE_BYTES = 96 << 20
DEFAULT_COMMAND_TIMEOUT = 600.0  # seconds; a 150 MB message over 2 Mbit/s still fits


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps one connection enforces (see the module docstring)."""

    max_responses: int = DEFAULT_MAX_RESPONSES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    max_literal: int = MAX_LITERAL

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, overridden by the ``MAILTREK_IMAP_*`` variables that are set.

        Raises ConfigError for a value that is not a positive number.
        """
        return cls(
            max_responses=int(_positive(MAX_RESPONSES_ENV, DEFAULT_MAX_RESPONSES)),
            max_response_bytes=int(_positive(MAX_RESPONSE_BYTES_ENV, DEFAULT_MAX_RESPONSE_BYTES)),
            command_timeout=_positive(COMMAND_TIMEOUT_ENV, DEFAULT_COMMAND_TIMEOUT),
        )

    def budget(self, max_literal: int | None) -> int:
        """Bytes one command may collect: the response cap, plus one allowed message."""
        return self.max_response_bytes + (max_literal or 0)


def _positive(env: str, default: float) -> float:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{env}={text!r} is not a positive number")
    return value
