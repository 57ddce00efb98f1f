"""Crashes and broken links: nothing lost, nothing duplicated, the run recovers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imap_helpers import copy, diff_summary, dump, load, new_user
from mailtrek.devtools.proxy import Proxy

T0 = datetime(2020, 5, 1, tzinfo=UTC)


def mailbox(n: int, seed: int = 7) -> list[tuple[tuple[str, ...], bytes, frozenset[str], datetime]]:
    rnd = random.Random(seed)
    folders = [("INBOX",), ("Work", "Ünïcode"), ("Archive",)]
    out = []
    for i in range(n):
        size = rnd.choice([2_000, 8_000, 30_000, 120_000])
        body = (b"%06d " % i) * (size // 7)
        raw = (b"From: s%d@example.com\r\nSubject: message %d\r\nMessage-ID: <m%d@t>\r\n"
               b"Date: Mon, 1 Jun 2020 10:00:00 +0000\r\n\r\n" % (i, i, i)) + body + b"\r\n"
        out.append((folders[i % 3], raw, frozenset({"\\Seen"} if i % 2 else set()),
                    T0 + timedelta(minutes=i)))
    return out


async def test_link_cut_mid_fetch_recovers(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, mailbox(120))
    with Proxy("127.0.0.1", dovecot_src.port, cut_after=400_000, fault_conns=3) as p:
        report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "s.db",
                                 src_port=p.port)
        assert p.faults >= 1
    assert report.complete, report.errors
    a, b = await dump(dovecot_src, *src), await dump(dovecot_dst, *dst)
    assert a == b, diff_summary(a, b)


async def test_link_cut_mid_append_leaves_no_duplicate(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, mailbox(120, seed=8))
    with Proxy("127.0.0.1", dovecot_dst.port, cut_upstream_after=700_000, fault_conns=3) as p:
        report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "s.db",
                                 dst_port=p.port)
        assert p.faults >= 1
    assert report.complete, report.errors
    a, b = await dump(dovecot_src, *src), await dump(dovecot_dst, *dst)
    assert a == b, diff_summary(a, b)


async def test_latency_does_not_change_the_result(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, mailbox(60, seed=9))
    with Proxy("127.0.0.1", dovecot_src.port, rtt=0.04) as ps, \
            Proxy("127.0.0.1", dovecot_dst.port, rtt=0.04) as pd:
        t = time.monotonic()
        report = await copy((dovecot_src, *src), (dovecot_dst, *dst), tmp_path / "s.db",
                                 src_port=ps.port, dst_port=pd.port)
        elapsed = time.monotonic() - t
    assert report.complete
    # 60 messages one round trip at a time would need more than 60 x 40 ms x 3.
    assert elapsed < 60 * 0.04 * 3
    assert await dump(dovecot_src, *src) == await dump(dovecot_dst, *dst)


@pytest.mark.slow
async def test_kill_9_at_random_moments_then_rerun(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    items = mailbox(900, seed=10)
    await load(dovecot_src, *src, items)
    env = dict(os.environ, MAILTREK_SOURCE_PASSWORD=src[1], MAILTREK_DEST_PASSWORD=dst[1])
    cmd = [sys.executable, "-m", "mailtrek", "copy",
           f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}",
           f"imap://{dst[0]}@127.0.0.1:{dovecot_dst.port}",
           "--state", str(tmp_path / "k.db"), "--connections", "3"]
    rnd = random.Random(11)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(0.3, 1.2))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    got = await dump(dovecot_dst, *dst)
    want = await dump(dovecot_src, *src)
    assert got == want, diff_summary(want, got)
    assert sum(len(v) for v in got.values()) == len(items)


async def test_connections_dial_together_and_a_wrong_password_is_tried_once(
        dovecot_src, proxy) -> None:
    """The extra connections are dialled while the first logs in (a WAN pays one set of
    round trips, not two), and log in only after it: a wrong password is sent once, and
    the connections dialled for nothing are closed."""
    from imap_helpers import store
    from mailtrek.errors import AuthenticationError

    user, pw = new_user(dovecot_src)
    p = proxy("127.0.0.1", dovecot_src.port, rtt=0.05)
    good = store(dovecot_src, user, pw, port=p.port, connections=4)
    await good.connect()
    try:
        assert good.connections == 4 and p.connections == 4
    finally:
        await good.close()
    q = proxy("127.0.0.1", dovecot_src.port, rtt=0.05)
    bad = store(dovecot_src, user, pw + "x", port=q.port, connections=4)
    with pytest.raises(AuthenticationError):
        await bad.connect()
    assert q.connections == 4  # all dialled at once, before the first answer came
    assert bad.connections == 0
