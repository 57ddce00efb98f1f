"""Which copy of a Gmail message goes where: the label strategies, as a pure function.

Gmail shows each label as an IMAP folder, so a message with three labels is in three
folders, and ``[Gmail]/All Mail`` holds every message again (except Trash and Spam).
``plan_view`` takes the folder listings (one identity per message: X-GM-MSGID, or the
fingerprint + size) and decides, for one strategy, which (folder, UID) pairs are
presented to the copy engine and which keywords/flags each carries. No I/O.

Strategies:
- ``folders+categories``: each message once, in its most specific label's folder
  (INBOX, Sent, Drafts, then user labels, deepest first); its other user labels become
  keywords. Messages only in All Mail ("archived") are presented as an ARCHIVE folder.
- ``folders``: one copy per label folder; All Mail only for archived messages.
- ``all-mail``: All Mail, every label (Inbox and Sent included) as a keyword.
Trash and Spam (which All Mail leaves out) are kept as they are in every strategy. Important and
Starred are never folders: they become the keyword ``Important`` and ``\\Flagged``.
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from mailtrek.errors import UsageError
from mailtrek.model import FolderInfo, SpecialUse


class Strategy(enum.StrEnum):
    """How Gmail labels become destination folders and categories."""

    FOLDERS_CATEGORIES = "folders+categories"
    FOLDERS = "folders"
    ALL_MAIL = "all-mail"


# The --gmail-labels values (and the batch option): off, auto, or a Strategy.
MODES = ("auto", "off", *(s.value for s in Strategy))


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known --gmail-labels value; raise UsageError otherwise."""
    if mode not in MODES:
        raise UsageError(f"unknown --gmail-labels value {mode!r}",
                         hint=f"use one of: {', '.join(MODES)}")
    return mode


class Role(enum.StrEnum):
    """What a Gmail folder is, as far as labels go."""

    INBOX = "inbox"
    SENT = "sent"
    DRAFTS = "drafts"
    LABEL = "label"  # a user label
    ALL = "all"  # All Mail
    TRASH = "trash"
    SPAM = "spam"
    IMPORTANT = "important"
    STARRED = "starred"


IMPORTANT_KEYWORD = "Important"
FLAGGED = "\\Flagged"
# System labels as X-GM-LABELS spells them, and the keyword each gives in all-mail mode.
SYSTEM_LABELS = {"\\Inbox": Role.INBOX, "\\Sent": Role.SENT, "\\Draft": Role.DRAFTS,
                 "\\Drafts": Role.DRAFTS, "\\Important": Role.IMPORTANT, "\\Starred": Role.STARRED,
                 "\\Trash": Role.TRASH, "\\Spam": Role.SPAM, "\\All": Role.ALL}
_ROLE_KEYWORD = {Role.INBOX: "Inbox", Role.SENT: "Sent", Role.DRAFTS: "Drafts",
                 Role.IMPORTANT: IMPORTANT_KEYWORD}
_HOME_RANK = {Role.INBOX: 0, Role.SENT: 1, Role.DRAFTS: 2, Role.LABEL: 3}
_BY_USE = {SpecialUse.INBOX: Role.INBOX, SpecialUse.SENT: Role.SENT,
           SpecialUse.DRAFTS: Role.DRAFTS, SpecialUse.ALL: Role.ALL, SpecialUse.TRASH: Role.TRASH,
           SpecialUse.JUNK: Role.SPAM, SpecialUse.IMPORTANT: Role.IMPORTANT,
           SpecialUse.FLAGGED: Role.STARRED}
_BY_NAME = {"all mail": Role.ALL, "sent mail": Role.SENT, "drafts": Role.DRAFTS,
            "trash": Role.TRASH, "bin": Role.TRASH, "spam": Role.SPAM,
            "important": Role.IMPORTANT, "starred": Role.STARRED}
_GMAIL_ROOTS = ("[gmail]", "[google mail]")
_NOT_ATOM = re.compile(r'[\x00-\x20\x7f(){%*"\\\]]')


def role_of(folder: FolderInfo) -> Role:
    """Return the Gmail role of ``folder``: by SPECIAL-USE, else by its [Gmail]/ name."""
    if folder.path == ("INBOX",) or folder.special_use == SpecialUse.INBOX:
        return Role.INBOX
    if folder.special_use in _BY_USE:
        return _BY_USE[folder.special_use]
    if len(folder.path) == 2 and folder.path[0].lower() in _GMAIL_ROOTS:
        return _BY_NAME.get(folder.path[1].lower(), Role.LABEL)
    return Role.LABEL


def looks_like_gmail(folders: Sequence[FolderInfo]) -> bool:
    """True when the folder list has Gmail's All Mail (by \\All or by its [Gmail] name)."""
    return any(f.selectable and role_of(f) == Role.ALL for f in folders)


def label_keyword(label: str, *, imap_safe: bool = False) -> str:
    """Return the keyword (Outlook category) for a user label.

    With ``imap_safe`` the result is a valid IMAP atom that gives the label back: the
    label in modified UTF-7 (RFC 3501 5.1.3), where spaces and atom specials are
    base64-encoded too, so ``Клиенты`` and ``Партнёр`` stay apart and
    ``imapclient.imap_utf7.decode`` restores either. ASCII labels without specials are
    unchanged; an empty label becomes ``_``.
    """
    if not imap_safe:
        return label
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            data = base64.b64encode("".join(run).encode("utf-16-be")).rstrip(b"=")
            out.append("&" + data.replace(b"/", b",").decode("ascii") + "-")
            run.clear()

    for c in label:
        if c == "&":
            flush()
            out.append("&-")
        elif " " < c < "\x7f" and not _NOT_ATOM.match(c):
            flush()
            out.append(c)
        else:
            run.append(c)
    flush()
    return "".join(out) or "_"


@dataclass(frozen=True, slots=True)
class Member:
    """One message in one real folder, with the identity that pairs it across folders."""

    uid: int
    key: Hashable  # X-GM-MSGID, or (fingerprint, size, n-th duplicate)


@dataclass(slots=True)
class FolderView:
    """What the engine sees of one real folder: a subset of its UIDs, with extra flags."""

    real: FolderInfo
    info: FolderInfo  # the folder presented (same path and UIDVALIDITY, maybe another role)
    uids: set[int] = field(default_factory=set)
    extra: dict[int, frozenset[str]] = field(default_factory=dict)  # uid -> added flags


@dataclass(slots=True)
class View:
    """The whole presented mailbox: one FolderView per presented folder."""

    folders: dict[tuple[str, ...], FolderView] = field(default_factory=dict)

    def messages(self) -> int:
        return sum(len(v.uids) for v in self.folders.values())


def plan_view(
    folders: Sequence[FolderInfo],
    members: Mapping[tuple[str, ...], Sequence[Member]],
    strategy: Strategy,
    *,
    gm_labels: Mapping[Hashable, frozenset[str]] | None = None,
    imap_safe: bool = False,
) -> View:
    """Decide every presented (folder, UID) and its added flags, for ``strategy`` (pure).

    ``members`` holds each selectable folder's messages (folders missing from it are
    treated as empty). ``gm_labels`` maps an identity to its X-GM-LABELS, when known:
    it adds labels whose folders are hidden from IMAP. Stable: the same input gives
    the same view. Folders that are not Gmail's (no role) count as user labels.
    """
    roles = {f.path: role_of(f) for f in folders if f.selectable}
    by_path = {f.path: f for f in folders if f.selectable}
    # Every identity: the folders holding it, each with its UID there.
    where: dict[Hashable, dict[tuple[str, ...], int]] = {}
    for path in sorted(roles):
        for m in members.get(path, ()):
            where.setdefault(m.key, {}).setdefault(path, m.uid)

    view = View()

    def present(path: tuple[str, ...], uid: int, extra: frozenset[str], use: object = None
                ) -> None:
        real = by_path[path]
        fv = view.folders.get(path)
        if fv is None:
            info = real
            if use is not None:
                info = replace(real, special_use=use)  # type: ignore[arg-type]
            fv = view.folders[path] = FolderView(real=real, info=info)
        fv.uids.add(uid)
        if extra:
            fv.extra[uid] = extra

    for key in sorted(where, key=repr):
        held = where[key]
        labels = _labels(held, roles, (gm_labels or {}).get(key, frozenset()))
        marks = _marks(labels)
        hidden = frozenset(label_keyword(x, imap_safe=imap_safe) for x in labels.hidden)
        all_mail = next((p for p in sorted(held) if roles[p] == Role.ALL), None)
        homes = sorted((p for p in held if roles[p] in _HOME_RANK),
                       key=lambda p: (_HOME_RANK[roles[p]], -len(p), p))
        for p in sorted(held):
            if roles[p] in (Role.TRASH, Role.SPAM):
                present(p, held[p], marks)
        if strategy == Strategy.ALL_MAIL:
            if all_mail is not None:
                present(all_mail, held[all_mail], marks | _all_mail_keywords(labels, imap_safe))
            continue
        if not homes:
            if all_mail is not None:
                present(all_mail, held[all_mail], marks | hidden, SpecialUse.ARCHIVE)
            continue
        if strategy == Strategy.FOLDERS:
            for p in homes:
                present(p, held[p], marks | hidden)
            continue
        home = homes[0]
        others = frozenset(
            label_keyword(_label_name(p), imap_safe=imap_safe)
            for p in homes[1:] if roles[p] == Role.LABEL)
        present(home, held[home], marks | others | hidden)
    return view


@dataclass(frozen=True, slots=True)
class _Labels:
    roles: frozenset[Role]  # system roles the message has (folders or X-GM-LABELS)
    hidden: frozenset[str]  # user labels known only from X-GM-LABELS (no folder listed)
    users: frozenset[str]  # every user label, listed or hidden


def _label_name(path: tuple[str, ...]) -> str:
    return "/".join(path)


def _labels(held: Mapping[tuple[str, ...], int], roles: Mapping[tuple[str, ...], Role],
            gm: frozenset[str]) -> _Labels:
    sys_roles = {roles[p] for p in held if roles[p] != Role.LABEL}
    listed = {_label_name(p) for p in held if roles[p] == Role.LABEL}
    folder_names = {_label_name(p) for p, r in roles.items() if r == Role.LABEL}
    hidden = set()
    for label in gm:
        if label in SYSTEM_LABELS:
            sys_roles.add(SYSTEM_LABELS[label])
        elif label not in folder_names:
            hidden.add(label)
    return _Labels(frozenset(sys_roles), frozenset(hidden), frozenset(listed | hidden))


def _marks(labels: _Labels) -> frozenset[str]:
    """The keyword/flag that Important and Starred become."""
    out = set()
    if Role.IMPORTANT in labels.roles:
        out.add(IMPORTANT_KEYWORD)
    if Role.STARRED in labels.roles:
        out.add(FLAGGED)
    return frozenset(out)


def _all_mail_keywords(labels: _Labels, imap_safe: bool) -> frozenset[str]:
    """Every label as a keyword (Inbox, Sent, Drafts, Important and user labels)."""
    system = {_ROLE_KEYWORD[r] for r in labels.roles if r in _ROLE_KEYWORD}
    return frozenset(system | {label_keyword(x, imap_safe=imap_safe) for x in labels.users})
