"""An in-memory mailbox: the reference store and the behaviour suite's yardstick.

It behaves like a well-mannered IMAP server: folders with UIDVALIDITY/UIDNEXT and a
modseq, exact bytes, flags and keywords, INTERNALDATE, special-use roles. Useful for
tests of the sync layer and as the model the other stores are held to.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from mailtrek.errors import FolderRejectedError
from mailtrek.fingerprint import fingerprint, message_id_of
from mailtrek.model import FolderInfo, Message, MessageMeta, SpecialUse, portable_flags
from mailtrek.stores.base import AppendResult, FlagChange, StoreDefaults, StoreFeatures
from mailtrek.stores.registry import register
from mailtrek.stores.spec import MemorySpec

_uidvalidity = itertools.count(1000)


@dataclass(slots=True)
class _Stored:
    raw: bytes
    flags: frozenset[str]
    internaldate: datetime | None
    modseq: int


@dataclass(slots=True)
class _Folder:
    special_use: SpecialUse | None
    uidvalidity: int = field(default_factory=lambda: next(_uidvalidity))
    uidnext: int = 1
    modseq: int = 1
    messages: dict[int, _Stored] = field(default_factory=dict)


class MemoryStore(StoreDefaults):
    """A mailbox held in a dict; source and destination at once."""

    def __init__(self, *, max_message_size: int | None = None, reserved: frozenset[str] = frozenset()
                 ) -> None:
        self.features = StoreFeatures(kind="memory", condstore=True, lists_named_uids=True,
                                      max_message_size=max_message_size, reserved_names=reserved)
        self.folders: dict[tuple[str, ...], _Folder] = {("INBOX",): _Folder(SpecialUse.INBOX)}
        self.appends = 0

    async def connect(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to close."""

    # -- helpers for tests ---------------------------------------------------------------
    def add(self, path: tuple[str, ...], raw: bytes, flags: frozenset[str] = frozenset(),
            internaldate: datetime | None = None, special_use: SpecialUse | None = None) -> int:
        """Put a message straight into a folder (creating it); return its UID."""
        f = self.folders.setdefault(path, _Folder(special_use))
        return self._store(f, raw, flags, internaldate)

    def _store(self, f: _Folder, raw: bytes, flags: frozenset[str], date: datetime | None) -> int:
        uid = f.uidnext
        f.uidnext += 1
        f.modseq += 1
        f.messages[uid] = _Stored(bytes(raw), portable_flags(flags), date, f.modseq)
        return uid

    # -- Store -----------------------------------------------------------------------------
    async def list_folders(self) -> list[FolderInfo]:
        """Every folder with its status."""
        return [self._info(p, f) for p, f in self.folders.items()]

    def _info(self, path: tuple[str, ...], f: _Folder) -> FolderInfo:
        return FolderInfo(path=path, special_use=f.special_use, uidvalidity=f.uidvalidity,
                          uidnext=f.uidnext, highestmodseq=f.modseq, messages=len(f.messages))

    async def list_messages(self, folder: FolderInfo, *, fingerprints: bool = False,
                            changed_since: int | None = None,
                            uids: Sequence[int] | None = None) -> list[MessageMeta]:
        """List messages like UID FETCH would."""
        f = self.folders.get(folder.path)
        if f is None:
            return []
        want = set(uids) if uids is not None else None
        out = []
        for uid, m in sorted(f.messages.items()):
            if want is not None and uid not in want:
                continue
            if changed_since is not None and m.modseq <= changed_since:
                continue
            meta = MessageMeta(uid=uid, size=len(m.raw), flags=m.flags,
                               internaldate=m.internaldate, modseq=m.modseq)
            if fingerprints:
                meta.fingerprint = fingerprint(m.raw)
                meta.message_id = message_id_of(m.raw)
            out.append(meta)
        return out

    async def fetch(self, folder: FolderInfo, uids: Sequence[int],
                    sizes: Mapping[int, int] | None = None, *,
                    max_size: int | None = None) -> AsyncIterator[Message]:
        """Yield whole messages; unknown UIDs are left out, oversized ones without bytes."""
        f = self.folders.get(folder.path)
        for uid in uids:
            m = f.messages.get(uid) if f else None
            if m is None:
                continue
            if max_size is not None and len(m.raw) > max_size:
                yield Message(uid=uid, raw=b"", flags=m.flags, internaldate=m.internaldate,
                              extra={"too_large": len(m.raw)})
            else:
                yield Message(uid=uid, raw=m.raw, flags=m.flags, internaldate=m.internaldate)

    async def ensure_folder(self, path: tuple[str, ...],
                            special_use: SpecialUse | None = None) -> FolderInfo:
        """Return the folder (its role's folder when it has one), creating it."""
        if special_use is not None:
            for p, f in self.folders.items():
                if f.special_use == special_use:
                    return self._info(p, f)
        if any(n.lower() in self.features.reserved_names for n in path):
            raise FolderRejectedError(f"reserved folder name {'/'.join(path)!r}")
        f = self.folders.setdefault(path, _Folder(special_use))
        return self._info(path, f)

    async def append(self, folder: FolderInfo, message: Message) -> AppendResult:
        """Store the exact bytes; refuse what is over the size limit."""
        f = self.folders.get(folder.path)
        if f is None:
            raise FolderRejectedError(f"no folder {folder.display!r}")
        limit = self.features.max_message_size
        if limit is not None and len(message.raw) > limit:
            return AppendResult(error=f"larger than {limit} bytes")
        self.appends += 1
        return AppendResult(dest_id=str(self._store(f, message.raw, message.flags,
                                                    message.internaldate)))

    async def set_flags(self, folder: FolderInfo, changes: Sequence[FlagChange]) -> None:
        """Replace the flags of each item."""
        f = self.folders[folder.path]
        for ch in changes:
            m = f.messages.get(int(ch.dest_id))
            if m is not None:
                f.modseq += 1
                f.messages[int(ch.dest_id)] = replace(m, flags=portable_flags(ch.flags),
                                                      modseq=f.modseq)


_named: dict[str, MemoryStore] = {}


def open_memory(spec: MemorySpec) -> MemoryStore:
    """Return the process's in-memory mailbox named ``spec.name`` (made on first use)."""
    store = _named.get(spec.name)
    if store is None:
        store = _named[spec.name] = MemoryStore(max_message_size=spec.max_message_size)
    return store


register(MemorySpec.kind, open_memory)
