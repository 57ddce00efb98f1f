"""The ``copy``/``verify`` command contract: exit codes, one-line errors, reports, TLS."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from imap_helpers import load, new_user

T0 = datetime(2022, 2, 2, 2, 2, 2, tzinfo=UTC)


def mailtrek(*args: str, env: dict[str, str] | None = None, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.pop("MAILTREK_SOURCE_PASSWORD", None)
    full.pop("MAILTREK_DEST_PASSWORD", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "mailtrek", *args], capture_output=True,
                          text=True, env=full, timeout=timeout)


def urls(src_inst, src, dst_inst, dst, scheme: str = "imap") -> list[str]:  # type: ignore[no-untyped-def]
    sp = src_inst.port if scheme == "imap" else src_inst.ssl_port
    dp = dst_inst.port if scheme == "imap" else dst_inst.ssl_port
    host = "127.0.0.1"
    return [f"{scheme}://{src[0]}@{host}:{sp}", f"{scheme}://{dst[0]}@{host}:{dp}"]


async def test_copy_over_tls_with_reports_and_exit_codes(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    big = b"Subject: too big\r\n\r\n" + b"z" * 50_000 + b"\r\n"
    await load(dovecot_src, *src, [(("INBOX",), b"Subject: a\r\n\r\na\r\n", frozenset(), T0),
                                   (("INBOX",), big, frozenset(), T0)])
    (tmp_path / "spw").write_text(src[1] + "\n")
    (tmp_path / "dpw").write_text(dst[1] + "\n")
    common = ["--source-password-file", str(tmp_path / "spw"), "--dest-password-file",
              str(tmp_path / "dpw"), "--source-ca-file", str(dovecot_src.ca_file),
              "--dest-ca-file", str(dovecot_dst.ca_file), "--state", str(tmp_path / "st.db")]
    dry = mailtrek("copy", *urls(dovecot_src, src, dovecot_dst, dst, "imaps"), *common,
                   "--max-size", "10k", "--dry-run")
    assert dry.returncode == 1, dry.stderr  # one message will be skipped
    assert "would copy 1 messages" in dry.stdout and "INBOX -> INBOX: 1 to copy" in dry.stdout
    r = mailtrek("copy", *urls(dovecot_src, src, dovecot_dst, dst, "imaps"), *common,
                 "--max-size", "10k", "--json-report", str(tmp_path / "r.json"))
    assert r.returncode == 1, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["totals"]["copied"] == 1 and not report["complete"]
    [skip] = report["skipped"]
    assert skip["subject"] == "too big" and skip["folder"] == "INBOX" and "limit" in skip["reason"]
    assert src[1] not in r.stdout + r.stderr + (tmp_path / "r.json").read_text()
    # Without the size limit the rest follows; then verify proves it.
    ok = mailtrek("copy", *urls(dovecot_src, src, dovecot_dst, dst, "imaps"), *common)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    v = mailtrek("verify", *urls(dovecot_src, src, dovecot_dst, dst, "imaps"), *common[:8],
                 "--json-report", str(tmp_path / "v.json"))
    assert v.returncode == 0, v.stdout
    assert json.loads((tmp_path / "v.json").read_text())["totals"]["matched"] == 2


async def test_verify_lists_what_is_missing(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, [(("INBOX",), b"Subject: only here\r\n\r\nx\r\n", frozenset(), T0)])
    env = {"MAILTREK_SOURCE_PASSWORD": src[1], "MAILTREK_DEST_PASSWORD": dst[1]}
    v = mailtrek("verify", *urls(dovecot_src, src, dovecot_dst, dst), env=env)
    assert v.returncode == 1
    assert "1 missing" in v.stdout and "only here" in v.stdout


def test_wrong_password_is_one_clear_line(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    env = {"MAILTREK_SOURCE_PASSWORD": "not-the-password", "MAILTREK_DEST_PASSWORD": dst[1]}
    r = mailtrek("copy", *urls(dovecot_src, src, dovecot_dst, dst), "--state", str(tmp_path / "s.db"),
                 env=env)
    assert r.returncode == 3
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("mailtrek: error:") and "refused the login" in first
    assert "Traceback" not in r.stderr and "not-the-password" not in r.stderr


def test_untrusted_certificate_is_refused(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    env = {"MAILTREK_SOURCE_PASSWORD": src[1], "MAILTREK_DEST_PASSWORD": dst[1]}
    r = mailtrek("copy", *urls(dovecot_src, src, dovecot_dst, dst, "imaps"),
                 "--state", str(tmp_path / "s.db"), env=env)
    assert r.returncode == 4
    assert "not trusted" in r.stderr and "--ca-file" in r.stderr and "Traceback" not in r.stderr


def test_unreachable_host_and_bad_usage(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    env = {"MAILTREK_SOURCE_PASSWORD": "x", "MAILTREK_DEST_PASSWORD": "y"}
    r = mailtrek("copy", f"imap://a@127.0.0.1:{port}", f"imap://b@127.0.0.1:{port}",
                 "--state", str(tmp_path / "s.db"), env=env)
    assert r.returncode == 4 and "refused the connection" in r.stderr
    bad = mailtrek("copy", "ftp://a@h", "imap://b@h", env=env)
    assert bad.returncode == 2 and "unknown address scheme" in bad.stderr
    pw = mailtrek("copy", "imap://a:secret@h", "imap://b@h", env=env)
    assert pw.returncode == 2 and "password" in pw.stderr and "secret" not in pw.stderr
    nopw = mailtrek("copy", "imap://a@127.0.0.1:1", "imap://b@127.0.0.1:1")
    assert nopw.returncode == 2 and "no password" in nopw.stderr


async def test_admin_login_opens_the_users_mailbox(dovecot_src, dovecot_dst, tmp_path: Path) -> None:
    src, dst = new_user(dovecot_src), new_user(dovecot_dst)
    await load(dovecot_src, *src, [(("INBOX",), b"Subject: via admin\r\n\r\nx\r\n", frozenset(), T0)])
    admin = dovecot_src.master_login(src[0])  # "user*admin" (Dovecot master user)
    env = {"MAILTREK_SOURCE_PASSWORD": dovecot_src.master_password,
           "MAILTREK_DEST_PASSWORD": dst[1]}
    r = mailtrek("copy", f"imap://{admin.replace('*', '%2A')}@127.0.0.1:{dovecot_src.port}",
                 f"imap+starttls://{dst[0]}@127.0.0.1:{dovecot_dst.port}",
                 "--ca-file", str(dovecot_dst.ca_file), "--state", str(tmp_path / "a.db"),
                 env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "copied 1 messages" in r.stdout
