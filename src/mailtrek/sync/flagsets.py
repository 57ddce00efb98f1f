"""Which flags a destination is expected to keep, for comparing source and copy.

A destination that cannot hold a flag is not "different" for lacking it: these sets
say, per destination kind, what is left out of both sides before flags are compared.
"""

from __future__ import annotations

from mailtrek.stores.imap.exchange import exchange_flags

# Keywords Microsoft 365 keeps as no category (Graph route): not a difference there.
GRAPH_DROPS = frozenset({
    "$MDNSent", "$Forwarded", "$Junk", "$NotJunk", "NonJunk", "Junk", "\\Answered", "\\Draft",
    "$Phishing", "$SubmitPending", "$Submitted"})


def comparable_flags(flags: frozenset[str], kind: str) -> frozenset[str]:
    """Return the part of ``flags`` that a destination of ``kind`` keeps.

    ``kind``: "graph" (Microsoft Graph), "exchange" (Exchange Online's IMAP: mail-system
    keywords are not sent, they would become categories), anything else keeps all.
    """
    if kind == "graph":
        return frozenset(f for f in flags if f not in GRAPH_DROPS)
    if kind == "exchange":
        return exchange_flags(flags)
    return flags
