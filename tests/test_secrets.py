"""Encryption at rest and redaction of secrets."""

from __future__ import annotations

import logging
import os
import stat

import pytest
from cryptography.fernet import Fernet

from mailtrek.errors import ConfigError
from mailtrek.secrets import (
    KEY_ENV,
    MASK,
    RedactingFilter,
    SecretBox,
    load_key,
    read_secret_file,
    redact,
    remember,
)


def test_key_file_created_0600_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    k1 = load_key(tmp_path / "home")
    path = tmp_path / "home" / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key(tmp_path / "home") == k1


def test_key_from_environment_wins(tmp_path, monkeypatch):
    key = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV, key.decode())
    assert load_key(tmp_path) == key
    assert not (tmp_path / "secret.key").exists()


def test_bad_key_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(ConfigError):
        load_key(tmp_path)


def test_round_trip_and_ciphertext_hides_secret():
    box = SecretBox(Fernet.generate_key())
    token = box.encrypt("hunter2-pass")
    assert "hunter2" not in token
    assert box.decrypt(token) == "hunter2-pass"


def test_wrong_key_explained():
    token = SecretBox(Fernet.generate_key()).encrypt("pw-one")
    with pytest.raises(ConfigError) as e:
        SecretBox(Fernet.generate_key()).decrypt(token)
    assert "pw-one" not in str(e.value)


def test_redact_known_and_extra():
    remember("Tr0ub4dor&3")
    assert redact("login failed for Tr0ub4dor&3 at x") == f"login failed for {MASK} at x"
    assert redact("key=abcdef", extra=["abcdef"]) == f"key={MASK}"
    assert redact("nothing here") == "nothing here"


def test_logging_filter_masks_args(caplog):
    remember("correct-horse-battery")
    log = logging.getLogger("mailtrek.test.redact")
    log.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="mailtrek.test.redact"):
        log.info("password is %s", "correct-horse-battery")
    assert "correct-horse-battery" not in caplog.text and MASK in caplog.text


def test_secret_file(tmp_path):
    p = tmp_path / "pw"
    p.write_text("first-line-secret\nignored\n")
    assert read_secret_file(p) == "first-line-secret"
    assert redact("x first-line-secret") == f"x {MASK}"
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError):
        read_secret_file(tmp_path / "empty")
    with pytest.raises(ConfigError):
        read_secret_file(tmp_path / "missing")
