"""Name a mailbox move by its route: which source mailbox goes to which destination mailbox.

Engine state (``MailboxState.mailbox``) is keyed by route, not by batch: the same user in
a second batch (after a delete, a move between batches or a corrected CSV) continues
from what is already on the destination instead of copying it again.
"""

from __future__ import annotations


def mailbox_route(source_endpoint: str, username: str, tenant: str | None, dest_endpoint: str | None,
              email: str) -> str:
    """Return the engine-state key of moving ``username`` on ``source_endpoint`` to ``email``.

    Pure; the destination is a tenant or an IMAP endpoint. Logins and addresses compare
    case-insensitively, as servers do.
    """
    dest = f"tenant:{tenant}" if tenant else f"imap:{dest_endpoint}"
    return f"route:{source_endpoint}/{username.strip().lower()}>{dest}/{email.strip().lower()}"
