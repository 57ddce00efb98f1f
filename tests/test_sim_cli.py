"""``mailtrek sim`` as a subprocess: prints the CA path and URLs, serves discovery, stops on SIGTERM."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

# The console script when installed (the contract is the `mailtrek sim` command line).
_SCRIPT = Path(sys.executable).with_name("mailtrek")
MAILTREK = [str(_SCRIPT)] if _SCRIPT.exists() else [
    sys.executable, "-c", "from mailtrek.cli.main import main; main()"]


def _read_announcement(proc: subprocess.Popen[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    assert proc.stdout is not None
    while "imap_oauth_issuer" not in values:
        line = proc.stdout.readline()
        assert line, "mailtrek sim exited before announcing itself"
        key, _, value = line.strip().partition("=")
        values[key] = value
    return values


def test_cli_serves_discovery_and_stops_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [*MAILTREK, "sim", "--host", "127.0.0.1", "--port", "0",
         "--users", "a@contoso.test,b@contoso.test", "--state-dir", str(state), "--latency-ms", "0",
         "--apps", "c:s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        values = _read_announcement(proc)
        assert values["ca_file"] == str(state / "ca.pem")
        assert Path(values["ca_file"]).is_file()
        context = ssl.create_default_context(cafile=values["ca_file"])
        with httpx.Client(verify=context, trust_env=False) as client:
            doc = client.get(f"{values['authority']}/v2.0/.well-known/openid-configuration")
            assert doc.status_code == 200
            assert doc.json()["token_endpoint"] == f"{values['authority']}/oauth2/v2.0/token"
            token = client.post(doc.json()["token_endpoint"], data={
                "grant_type": "client_credentials", "client_id": "c", "client_secret": "s",
                "scope": "https://graph.microsoft.com/.default"}).json()["access_token"]
            refused = client.post(doc.json()["token_endpoint"], data={
                "grant_type": "client_credentials", "client_id": "other", "client_secret": "s",
                "scope": "https://graph.microsoft.com/.default"})
            assert refused.status_code == 400  # --apps: unknown client ids are refused
            user = client.get(f"{values['graph_url']}/users/b@contoso.test",
                              headers={"Authorization": f"Bearer {token}"})
            assert user.json()["userPrincipalName"] == "b@contoso.test"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_latency() -> None:
    result = subprocess.run(
        [*MAILTREK, "sim", "--latency-ms", "fast"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--latency-ms" in result.stderr


def test_cli_rejects_bad_apps() -> None:
    result = subprocess.run(
        [*MAILTREK, "sim", "--apps", "only-an-id", "--fractional-retry-after"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--apps" in result.stderr
