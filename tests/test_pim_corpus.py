"""The shared PIM corpus, DAV to DAV through the CLI: once, re-runnable, adoptable, verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailtrek.pim.fields import BrokenObjectError, read_object
from mailtrek.pim.model import KINDS
from mailtrek.pim.sync import copy_pim
from mailtrek.state.db import open_engine
from mailtrek.state.pim import PimState
from pim_helpers import load_corpus, store


def mailtrek(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAILTREK_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "mailtrek", *args], capture_output=True,
                          text=True, env=full, timeout=300)


async def objects(radicale, user: str, password: str) -> dict[tuple[str, str], dict]:  # type: ignore[no-untyped-def]
    """``{(collection name, UID): fields}`` of every readable object, plus broken hrefs."""
    s = store(radicale, user, password)
    out: dict[tuple[str, str], dict] = {}
    await s.connect()
    try:
        for c in await s.collections(["calendar", "contacts"]):
            for item in await s.fetch(c, [r.href for r in await s.list_items(c)]):
                try:
                    o = read_object(item.body, c.kind)
                except BrokenObjectError:
                    out[(c.name, "broken " + item.href)] = {}
                    continue
                assert (c.name, o.uid) not in out, f"UID {o.uid} twice in {c.name}"
                out[(c.name, o.uid)] = o.fields
    finally:
        await s.close()
    return out


@pytest.fixture(scope="module")
def corpus_source(radicale, pim_corpus_dir: Path):  # type: ignore[no-untyped-def]
    user, password = "corpus-src", "pw-corpus-src"
    radicale.add_user(user, password)
    return user, password, load_corpus(radicale, user, password, pim_corpus_dir)


@pytest.mark.slow  # about 30 s idle: the corpus is loaded and copied through a real server
async def test_corpus_copies_once_reruns_empty_adopts_and_verifies(
        radicale, corpus_source, dav_user, tmp_path: Path) -> None:
    src_user, src_pw, loaded = corpus_source
    dst_user, dst_pw = dav_user()
    src_objects = await objects(radicale, src_user, src_pw)
    broken = {k[1].removeprefix("broken ") for k, v in src_objects.items() if not v}
    readable = {k: v for k, v in src_objects.items() if v}
    assert len(readable) > 100 and len(loaded.stored) == len(src_objects)
    assert loaded.refused, "the corpus holds files a CalDAV server refuses"

    env = {"MAILTREK_SOURCE_PASSWORD": src_pw, "MAILTREK_DEST_PASSWORD": dst_pw}
    pair = [radicale.dav_url(src_user), radicale.dav_url(dst_user)]
    common = ["--ca-file", str(radicale.ca_file), "--state", str(tmp_path / "state.db")]
    started = time.monotonic()
    first = mailtrek("copy", *pair, *common, "--json-report", str(tmp_path / "1.json"), env=env)
    took = time.monotonic() - started
    report = json.loads((tmp_path / "1.json").read_text())
    t = report["totals"]
    assert first.returncode == (1 if broken else 0), first.stdout + first.stderr
    assert t["selected"] == len(src_objects) == t["copied"] + t["skipped"] + t["failed"]
    assert (t["copied"], t["failed"]) == (len(readable), len(broken))
    failed = {p["href"]: p["reason"] for c in report["collections"] for p in c["problems"]}
    assert set(failed) == broken and all(failed.values())  # one by one, each with its reason
    assert src_pw not in first.stdout + first.stderr + (tmp_path / "1.json").read_text()
    # Every readable object arrived once, with equal instants, recurrence, title, e-mails.
    assert await objects(radicale, dst_user, dst_pw) == readable
    print(f"\nDAV->DAV corpus: {t['copied']} objects in {took:.1f} s (CLI, start-up "
          f"included): {t['copied'] / took:.1f} objects/s; report says "
          f"{report['items_per_second']} objects/s")

    # Re-run and lost state, in-process (the CLI contract is checked above and below).
    src, dst = store(radicale, src_user, src_pw), store(radicale, dst_user, dst_pw)
    await src.connect()
    await dst.connect()
    try:
        engine = open_engine(tmp_path / "state.db")
        key = f"{src.address.display()} -> {dst.address.display()}"
        t2 = (await copy_pim(src, dst, PimState(engine, key), KINDS)).totals()
        assert (t2["copied"], t2["skipped"], t2["failed"]) == (0, len(readable), len(broken))
        lost = PimState(open_engine(tmp_path / "lost.db"), key)
        t3 = (await copy_pim(src, dst, lost, KINDS)).totals()
        assert (t3["copied"], t3["adopted"], t3["failed"]) == (0, len(readable), len(broken))
        t4 = (await copy_pim(src, dst, lost, KINDS)).totals()  # adopted objects are recorded
        assert (t4["copied"], t4["adopted"], t4["skipped"]) == (0, 0, len(readable))
    finally:
        await src.close()
        await dst.close()
    assert await objects(radicale, dst_user, dst_pw) == readable

    v = mailtrek("verify", *pair, *common[:2], "--json-report", str(tmp_path / "v.json"), env=env)
    assert v.returncode == 0, v.stdout + v.stderr
    vt = json.loads((tmp_path / "v.json").read_text())["totals"]
    assert (vt["matched"], vt["missing"], vt["different"], vt["extra"], vt["broken"]) == (
        len(readable), 0, 0, 0, len(broken))
