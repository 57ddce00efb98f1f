"""Discovery without the network: the presets' own domains are one more source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailtrek.devtools.dovecot import free_port
from mailtrek.orchestrate.discovery import DiscoveryConfig, discover, source_labels
from mailtrek.orchestrate.presets import PRESETS
from mailtrek.orchestrate.provider_domains import PRESET_DOMAINS, preset_for_domain


def offline() -> DiscoveryConfig:
    """DNS and HTTPS pointed at ports where nothing listens: every lookup fails."""
    dead = free_port()
    return DiscoveryConfig(nameserver=f"127.0.0.1:{dead}", ispdb_url=f"https://127.0.0.1:{dead}/",
                           https_port=dead, timeout=0.1, probe=False)


@pytest.mark.parametrize("address,host", [
    ("someone@yahoo.com", "imap.mail.yahoo.com"), ("a@icloud.com", "imap.mail.me.com"),
    ("d@Hotmail.com", "outlook.office365.com"),
])
def test_known_domains_are_found_when_lookups_fail(address: str, host: str) -> None:
    d = discover(address, offline())
    assert d.candidates and d.candidates[0].host == host
    assert source_labels(d.candidates[0]) == "known provider domain"
    assert any("mailtrek's own list" in n for n in d.notes)


def test_every_listed_domain_names_a_preset_with_a_host() -> None:
    for preset, domains in PRESET_DOMAINS.items():
        assert PRESETS[preset].host, preset
        for domain in domains:
            assert preset_for_domain(domain) == preset
    assert preset_for_domain("example.org") is None


def test_cli_says_where_the_server_came_from(tmp_path: Path) -> None:
    cfg = offline()
    env = dict(os.environ, MAILTREK_HOME=str(tmp_path / "home"))
    p = subprocess.run([sys.executable, "-m", "mailtrek", "endpoint", "discover", "someone@yahoo.com",
                        "--nameserver", str(cfg.nameserver), "--ispdb-url", cfg.ispdb_url,
                        "--timeout", "0.1", "--no-probe"],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert "imap.mail.yahoo.com" in p.stdout, p.stdout + p.stderr
    assert "from known domain yahoo.com -> preset yahoo" in p.stdout
    assert "mailtrek's own list" in p.stdout
