"""Small helpers the IMAP tests share: fresh users, loading and dumping mailboxes."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from mailtrek.model import Message
from mailtrek.state.db import MailboxState, open_engine
from mailtrek.stores.imap.connection import ConnectParams, Credentials
from mailtrek.stores.imap.store import ImapSettings, ImapStore
from mailtrek.sync.engine import copy_mailbox
from mailtrek.sync.options import CopyOptions, CopyReport


def new_user(inst: Any, prefix: str = "u") -> tuple[str, str]:
    """Create a fresh user on a running DovecotInstance; return (login, password)."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    pw = f"pw-{uuid.uuid4().hex[:8]}"
    login = inst.add_user(name, pw) or name  # waits until Dovecot knows the user
    return login, pw


def store(inst: Any, login: str, pw: str, *, readonly: bool = True, port: int | None = None,
          connections: int = 4) -> ImapStore:
    """An unconnected ImapStore for a user (plain IMAP on loopback)."""
    params = ConnectParams("127.0.0.1", port or inst.port, "none", timeout=15)
    return ImapStore(ImapSettings(params, Credentials(login, pw), connections=connections,
                                  readonly=readonly))


async def load(inst: Any, login: str, pw: str,
               items: list[tuple[tuple[str, ...], bytes, frozenset[str], datetime | None]]) -> None:
    """Create folders and APPEND messages (with flags and dates) as a seeding step."""
    st = store(inst, login, pw, readonly=False)
    await st.connect()
    try:
        folders = {}
        for path, raw, flags, date in items:
            if path not in folders:
                folders[path] = await st.ensure_folder(path)
            res = await st.append(folders[path], Message(uid=0, raw=raw, flags=flags,
                                                          internaldate=date))
            assert res.ok, res.error
    finally:
        await st.close()


async def dump(inst: Any, login: str, pw: str) -> dict[tuple[str, ...], list[tuple[str, frozenset[str], datetime | None]]]:
    """Every folder's messages as sorted (sha256, flags without \\Recent, date)."""
    st = store(inst, login, pw)
    await st.connect()
    out: dict[tuple[str, ...], list[tuple[str, frozenset[str], datetime | None]]] = {}
    try:
        for f in await st.list_folders():
            if not f.selectable:
                continue
            metas = await st.list_messages(f)
            rows = []
            async for m in st.fetch(f, [x.uid for x in metas]):
                rows.append((hashlib.sha256(m.raw).hexdigest(),
                             frozenset(x for x in m.flags if x != "\\Recent"), m.internaldate))
            out[f.path] = sorted(rows, key=lambda r: (r[0], sorted(r[1])))
    finally:
        await st.close()
    return out


async def copy(src: tuple[Any, str, str], dst: tuple[Any, str, str], state_path: Path,
               *, src_port: int | None = None, dst_port: int | None = None,
               **options: Any) -> CopyReport:
    """Run the engine from one Dovecot user to another (ports: reach a side via a proxy)."""
    s = store(*src, port=src_port)
    d = store(*dst, readonly=False, port=dst_port)
    await s.connect()
    await d.connect()
    try:
        state = MailboxState(open_engine(state_path), "test")
        return await copy_mailbox(s, d, state, CopyOptions(**options))
    finally:
        await s.close()
        await d.close()


def corpus_files(corpus_dir: Path | None) -> list[tuple[str, bytes, str]]:
    """(name, bytes, sha256) of every corpus message listed in MANIFEST.tsv."""
    if corpus_dir is None:
        return []
    rows = []
    lines = (corpus_dir / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    for line in lines:
        name, _size, sha = line.split("\t")[:3]
        rows.append((name, (corpus_dir / name).read_bytes(), sha))
    return rows


def diff_summary(src: dict, dst: dict) -> str:  # type: ignore[type-arg]
    """What differs between two dumps, compactly (for assertion messages)."""
    from collections import Counter

    out = []
    for path in sorted(set(src) | set(dst)):
        a, b = src.get(path, []), dst.get(path, [])
        if a == b:
            continue
        ca, cb = Counter(r[0] for r in a), Counter(r[0] for r in b)
        missing = sum((ca - cb).values())
        extra = sum((cb - ca).values())
        flagdiff = len(set(a) - set(b)) - missing
        out.append(f"{'/'.join(path)}: src {len(a)} dst {len(b)} missing {missing} extra {extra} "
                   f"state-diffs {flagdiff} e.g. {sorted(set(a) ^ set(b))[:2]}")
    return "; ".join(out) or "equal"
