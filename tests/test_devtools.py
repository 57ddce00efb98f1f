"""The test infrastructure itself: private Dovecot servers, TLS, master login, the proxy."""

from __future__ import annotations

import imaplib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.proxy import Proxy


def _login(inst: DovecotInstance, login: str, password: str, port: int | None = None) -> None:
    conn = imaplib.IMAP4(inst.host, port or inst.port, timeout=10)
    try:
        typ, _ = conn.login(login, password)
        assert typ == "OK"
    finally:
        conn.logout()


def test_both_servers_greet_on_their_own_ports(
    dovecot_src: DovecotInstance, dovecot_dst: DovecotInstance
) -> None:
    ports = {dovecot_src.port, dovecot_src.ssl_port, dovecot_dst.port, dovecot_dst.ssl_port}
    assert len(ports) == 4
    for inst in (dovecot_src, dovecot_dst):
        with socket.create_connection((inst.host, inst.port), timeout=5) as s:
            assert s.makefile("rb").readline().startswith(b"* OK")


def test_login_and_wrong_password(dovecot_src: DovecotInstance, src_user: tuple[str, str]) -> None:
    login, password = src_user
    _login(dovecot_src, login, password)
    started = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error):
        _login(dovecot_src, login, password + "x")
    assert time.monotonic() - started < 2.0  # auth_failure_delay = 0, no anvil penalty


def test_master_login_opens_the_users_mailbox(
    dovecot_dst: DovecotInstance, dst_user: tuple[str, str]
) -> None:
    login, password = dst_user
    conn = imaplib.IMAP4(dovecot_dst.host, dovecot_dst.port, timeout=10)
    conn.login(login, password)
    conn.create("MarkerFolder")
    conn.logout()
    conn = imaplib.IMAP4(dovecot_dst.host, dovecot_dst.port, timeout=10)
    conn.login(dovecot_dst.master_login(login), dovecot_dst.master_password)
    _, listing = conn.list()
    conn.logout()
    assert any(b"MarkerFolder" in line for line in listing if isinstance(line, bytes))
    with pytest.raises(imaplib.IMAP4.error):
        _login(dovecot_dst, dovecot_dst.master_login(login), "wrong-master-password")
    with pytest.raises(imaplib.IMAP4.error):
        _login(dovecot_dst, dovecot_dst.master_login("nosuchuser"), dovecot_dst.master_password)


def test_imaps_and_starttls_verify_against_ca_file(
    dovecot_src: DovecotInstance, src_user: tuple[str, str]
) -> None:
    login, password = src_user
    ctx = ssl.create_default_context(cafile=str(dovecot_src.ca_file))
    conn = imaplib.IMAP4_SSL("localhost", dovecot_src.ssl_port, ssl_context=ctx, timeout=10)
    assert conn.login(login, password)[0] == "OK"
    conn.logout()
    conn = imaplib.IMAP4(dovecot_src.host, dovecot_src.port, timeout=10)
    conn.starttls(ssl.create_default_context(cafile=str(dovecot_src.ca_file)))
    assert conn.login(login, password)[0] == "OK"
    conn.logout()


def test_tls_verification_fails_without_the_ca(dovecot_src: DovecotInstance) -> None:
    default = ssl.create_default_context()  # system trust store only
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL("127.0.0.1", dovecot_src.ssl_port, ssl_context=default, timeout=10)
    other = ssl.create_default_context(cafile=str(dovecot_src.ca_file))
    with (
        socket.create_connection(("127.0.0.1", dovecot_src.ssl_port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),  # the cert names localhost/127.0.0.1 only
    ):
        other.wrap_socket(raw, server_hostname="mail.example.com")


def test_add_user_rejects_unsafe_names(dovecot_src: DovecotInstance) -> None:
    for name, password in (("a:b", "pw"), ("bad\nname", "pw"), ("ok", "p:w"), ("x*admin", "pw")):
        with pytest.raises(ValueError):
            dovecot_src.add_user(name, password)


def test_mailbox_status_counts_server_side(
    dovecot_src: DovecotInstance, src_user: tuple[str, str]
) -> None:
    login, password = src_user
    conn = imaplib.IMAP4(dovecot_src.host, dovecot_src.port, timeout=10)
    conn.login(login, password)
    conn.create("Box")
    conn.select("INBOX")  # maildir creates INBOX lazily
    for i in range(3):
        conn.append("Box", None, None, f"Subject: {i}\r\n\r\nbody\r\n".encode())
    conn.logout()
    status = dovecot_src.mailbox_status(login)
    assert status["Box"]["messages"] == 3
    assert status["Box"]["uidnext"] == 4
    assert status["INBOX"]["messages"] == 0, status


def _noop_time(port: int, login: str, password: str, count: int = 20) -> float:
    conn = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    conn.login(login, password)
    started = time.monotonic()
    for _ in range(count):
        conn.noop()
    elapsed = time.monotonic() - started
    conn.logout()
    return elapsed


def test_proxy_adds_one_rtt_per_round_trip(
    dovecot_src: DovecotInstance, src_user: tuple[str, str], proxy: Callable[..., Proxy]
) -> None:
    login, password = src_user
    direct = _noop_time(dovecot_src.port, login, password)
    p = proxy(dovecot_src.host, dovecot_src.port, rtt=0.04)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        assert s.makefile("rb").readline().startswith(b"* OK")
    assert time.monotonic() - started >= 0.075  # handshake 1.5 RTT + greeting 0.5 RTT
    delayed = _noop_time(p.port, login, password)
    assert 0.78 <= delayed <= 1.6, delayed  # 20 NOOPs at 40 ms
    assert direct < 0.3
    assert p.connections == 2


def test_proxy_cut_after_bytes_resets_and_limits_to_first_connections(
    dovecot_src: DovecotInstance, proxy: Callable[..., Proxy]
) -> None:
    p = proxy(dovecot_src.host, dovecot_src.port, cut_after=10, fault_conns=1)
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        got = b""
        with pytest.raises(ConnectionResetError):
            while chunk := s.recv(4096):
                got += chunk
            raise ConnectionResetError("closed without reset")  # must not get here quietly
    assert got == b"* OK [CAPA"  # exactly 10 bytes arrive before the reset
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        assert s.makefile("rb").readline().startswith(b"* OK")  # 2nd connection unharmed
    assert p.faults == 1


def test_proxy_cut_fin_mode_closes_cleanly_after_exact_bytes(
    dovecot_src: DovecotInstance, proxy: Callable[..., Proxy]
) -> None:
    p = proxy(dovecot_src.host, dovecot_src.port, cut_after=7, cut_mode="fin")
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    assert got == b"* OK [C"


def test_proxy_cut_upstream_mid_append(
    dovecot_src: DovecotInstance, src_user: tuple[str, str], proxy: Callable[..., Proxy]
) -> None:
    login, password = src_user
    p = proxy(dovecot_src.host, dovecot_src.port, cut_upstream_after=2000, fault_conns=1)
    conn = imaplib.IMAP4("127.0.0.1", p.port, timeout=10)
    conn.login(login, password)
    body = b"Subject: big\r\n\r\n" + b"x" * 50_000 + b"\r\n"
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        conn.append("INBOX", None, None, body)
    time.sleep(0.2)
    assert dovecot_src.mailbox_status(login)["INBOX"]["messages"] == 0
    assert p.faults == 1


def test_proxy_stall_then_resume(
    dovecot_src: DovecotInstance, proxy: Callable[..., Proxy]
) -> None:
    p = proxy(dovecot_src.host, dovecot_src.port, stall_after=5, stall_for=0.5)
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        started = time.monotonic()
        line = s.makefile("rb").readline()
        assert line.startswith(b"* OK")
        assert time.monotonic() - started >= 0.45


def test_proxy_stall_forever_times_out_client(
    dovecot_src: DovecotInstance, proxy: Callable[..., Proxy]
) -> None:
    p = proxy(dovecot_src.host, dovecot_src.port, stall_after=5)
    with socket.create_connection(("127.0.0.1", p.port), timeout=0.5) as s:
        assert s.recv(100) == b"* OK "
        with pytest.raises(TimeoutError):
            s.recv(100)


def test_proxy_rejects_negative_settings() -> None:
    with pytest.raises(ValueError):
        Proxy("127.0.0.1", 1, rtt=-1)


def test_proxy_cli_prints_port_first(dovecot_src: DovecotInstance) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtrek.devtools.proxy", "--target",
         f"127.0.0.1:{dovecot_src.port}", "--rtt-ms", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            assert s.makefile("rb").readline().startswith(b"* OK")
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_proxy_carries_megabytes_byte_exact_with_latency(
    dovecot_src: DovecotInstance, src_user: tuple[str, str], proxy: Callable[..., Proxy]
) -> None:
    login, password = src_user
    body = b"".join(b"%08d " % i + b"y" * 90 + b"\r\n" for i in range(30_000))  # ~3 MB
    raw = b"Subject: big\r\n\r\n" + body
    p = proxy(dovecot_src.host, dovecot_src.port, rtt=0.02)
    conn = imaplib.IMAP4("127.0.0.1", p.port, timeout=20)
    conn.login(login, password)
    conn.append("INBOX", None, None, raw)
    conn.select("INBOX")
    typ, data = conn.fetch("1", "(BODY.PEEK[])")
    conn.logout()
    assert typ == "OK"
    first = data[0]
    assert isinstance(first, tuple) and first[1] == raw


def test_corpus_rows_match_the_manifest(
    corpus_rows: Callable[[], Iterator[tuple[str, bytes, str]]],
) -> None:
    rows = list(corpus_rows())
    assert len(rows) > 100
    name, raw, digest = rows[0]
    assert name.endswith(".eml") and raw and len(digest) == 64


def test_dovecot_cli_init_start_stop() -> None:
    # Under a fresh 0700 mkdtemp dir: init must make the parents searchable for Dovecot.
    root = Path(tempfile.mkdtemp(prefix="mt-cli-", dir="/tmp")) / "inst"
    cli = [sys.executable, "-m", "mailtrek.devtools.dovecot"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, str(root)], capture_output=True, text=True,
                              timeout=60, check=False)

    try:
        assert run("status").returncode == 1  # nothing there yet
        init = run("init", "--user", "carol")
        assert init.returncode == 0 and init.stdout.startswith("stopped")
        password = (root / "users").read_text().split(":")[1].removeprefix("{PLAIN}")
        assert password not in init.stdout + init.stderr  # secrets stay in the users file
        started = run("start")
        assert started.returncode == 0 and started.stdout.startswith("running"), started.stderr
        inst = DovecotInstance.open(root)
        _login(inst, "carol", password)
        _login(inst, inst.master_login("carol"), inst.master_password)
        assert run("stop").stdout.startswith("stopped")
        with pytest.raises(OSError):
            socket.create_connection((inst.host, inst.port), timeout=2)
    finally:
        if (root / "instance.json").exists():
            DovecotInstance.open(root).remove()
        shutil.rmtree(root.parent, ignore_errors=True)
