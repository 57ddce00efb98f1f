"""IMAP flags <-> Graph message properties.

- ``\\Seen`` <-> ``isRead``; ``\\Flagged`` <-> ``flag.flagStatus`` "flagged";
- keywords <-> ``categories``, except keywords that are mail-system state rather than
  user labels (``SYSTEM_KEYWORDS``), which would otherwise show up as a category on
  every migrated item (e.g. ``$MDNSent``);
- ``\\Answered`` / ``$Forwarded`` -> PidTagLastVerbExecuted (``Integer 0x1081``) 102 / 104,
  read back the same way. ``\\Draft`` and ``\\Deleted`` are not carried.
"""

from __future__ import annotations

from typing import Any

from mailtrek.model import keywords_of

SYSTEM_KEYWORDS = frozenset(k.lower() for k in (
    "$MDNSent", "$Forwarded", "$Junk", "$NotJunk", "NonJunk", "Junk", "$Phishing",
    "$SubmitPending", "$Submitted", "$Answered", "$Recent",
))
# Keywords Microsoft 365 keeps as no category on the Graph route (lower case).
GRAPH_DROPPED = frozenset(k.lower() for k in (
    "$MDNSent", "$Forwarded", "$Junk", "$NotJunk", "NonJunk", "Junk", "\\Answered", "\\Draft",
    "$Phishing", "$SubmitPending", "$Submitted"))
VERB_REPLY = 102
VERB_REPLY_ALL = 103
VERB_FORWARD = 104


def categories_of(flags: frozenset[str]) -> list[str]:
    """Return the categories that carry the user keywords of ``flags`` (sorted)."""
    return sorted(k for k in keywords_of(flags) if k.lower() not in SYSTEM_KEYWORDS)


def last_verb_of(flags: frozenset[str]) -> int | None:
    """Return PidTagLastVerbExecuted for ``flags``: reply wins over forward; None if neither."""
    if "\\Answered" in flags:
        return VERB_REPLY
    if any(f.lower() == "$forwarded" for f in flags):
        return VERB_FORWARD
    return None


def flag_fields(flags: frozenset[str]) -> dict[str, Any]:
    """Return the Graph properties (isRead, flag, categories) that express ``flags``."""
    return {
        "isRead": "\\Seen" in flags,
        "flag": {"flagStatus": "flagged" if "\\Flagged" in flags else "notFlagged"},
        "categories": categories_of(flags),
    }


def flags_of(item: dict[str, Any], last_verb: int | None = None) -> frozenset[str]:
    """Return the IMAP flags a Graph message carries (inverse of flag_fields)."""
    out: set[str] = set()
    if item.get("isRead"):
        out.add("\\Seen")
    if (item.get("flag") or {}).get("flagStatus") == "flagged":
        out.add("\\Flagged")
    out.update(str(c) for c in item.get("categories") or [])
    if last_verb in (VERB_REPLY, VERB_REPLY_ALL):
        out.add("\\Answered")
    elif last_verb == VERB_FORWARD:
        out.add("$Forwarded")
    return frozenset(out)


def patch_for(flags: frozenset[str], current: frozenset[str] | None) -> dict[str, Any]:
    """Return the PATCH body that makes an item with ``current`` flags carry ``flags``.

    ``current`` None means unknown: every field is sent. An empty dict means nothing to do.
    """
    want = flag_fields(flags)
    if current is None:
        return want
    have = flag_fields(current)
    return {k: v for k, v in want.items() if have[k] != v}


def verb_changed(flags: frozenset[str], current: frozenset[str] | None) -> bool:
    """True when the reply/forward state of ``flags`` differs from ``current``."""
    return current is None or last_verb_of(flags) != last_verb_of(current)
