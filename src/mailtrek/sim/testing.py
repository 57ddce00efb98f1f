"""Helpers for tests that talk to a running Simulator: tokens and pre-configured clients."""

from __future__ import annotations

import ssl

import httpx

from mailtrek.sim.config import GRAPH_RESOURCE
from mailtrek.sim.server import Simulator


def tls_context(sim: Simulator) -> ssl.SSLContext:
    """Return an SSL context that trusts only the simulator's CA."""
    return ssl.create_default_context(cafile=str(sim.ca_file))


def fetch_token(sim: Simulator, *, client_id: str = "mailtrek-test-app",
                client_secret: str = "test-secret", resource: str = GRAPH_RESOURCE,
                tenant: str | None = None) -> str:
    """Return an access token from the simulator's token endpoint (client credentials)."""
    with httpx.Client(verify=tls_context(sim), trust_env=False) as client:
        response = client.post(
            f"{sim.authority(tenant)}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": client_secret, "scope": f"{resource}/.default"},
        )
    response.raise_for_status()
    return str(response.json()["access_token"])


def graph_client(sim: Simulator, token: str | None = None, *, beta: bool = False,
                 timeout: float = 30.0) -> httpx.Client:
    """Return an httpx client rooted at the Graph URL, trusting the sim's CA, with a token."""
    return httpx.Client(
        base_url=sim.graph_beta_url if beta else sim.graph_url,
        verify=tls_context(sim), trust_env=False, timeout=timeout,
        headers={"Authorization": f"Bearer {token or fetch_token(sim)}"},
    )


def async_graph_client(sim: Simulator, token: str | None = None, *, beta: bool = False,
                       timeout: float = 30.0) -> httpx.AsyncClient:
    """Return an async httpx client like ``graph_client``."""
    return httpx.AsyncClient(
        base_url=sim.graph_beta_url if beta else sim.graph_url,
        verify=tls_context(sim), trust_env=False, timeout=timeout,
        headers={"Authorization": f"Bearer {token or fetch_token(sim)}"},
    )
