"""Every message of the shared MIME corpus lands through both Graph routes (skipped if absent)."""

from __future__ import annotations

import asyncio
import csv
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

sim_server = pytest.importorskip("mailtrek.sim.server")

from mailtrek.model import Message  # noqa: E402
from mailtrek.stores.m365 import TenantConfig, open_graph_store  # noqa: E402
from mailtrek.stores.m365 import graph as graph_module  # noqa: E402

CORPUS = Path("/work/shared/corpus")
pytestmark = pytest.mark.skipif(not (CORPUS / "MANIFEST.tsv").is_file(), reason="no corpus")


def corpus_files() -> list[Path]:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        return [CORPUS / row["file"] for row in csv.DictReader(fh, delimiter="\t")
                if (CORPUS / row["file"]).is_file()]


async def test_corpus_lands_through_import_mime_and_json() -> None:
    files = corpus_files()
    sim = sim_server.Simulator(sim_server.SimConfig(users=[])).start()
    try:
        tenant = TenantConfig(tenant_id=sim.config.tenant_id, client_id="app",
                              client_secret="x", authority=sim.authority(),
                              graph_url=f"{sim.base_url}/graph", ca_file=Path(sim.ca_file))
        for route in ("importMime", "json"):
            graph_module._DENIED_IMPORT_MIME.clear()
            if route == "json":
                sim.deny_permission()
            upn = f"c{uuid.uuid4().hex[:8]}@contoso.test"
            sim.add_user(upn)
            store = open_graph_store(upn, tenant)
            await store.connect()
            folder = await store.ensure_folder(("Corpus",))
            results = await asyncio.gather(*(store.append(folder, Message(
                uid=i, raw=f.read_bytes(), internaldate=datetime(2020, 1, 1, tzinfo=UTC)))
                for i, f in enumerate(files)))
            await store.close()
            failed = [(f.name, r.error) for f, r in zip(files, results, strict=True)
                      if not r.ok and not r.in_doubt]
            assert not failed, (route, failed[:5])
            # Real-world MIME never crashes the simulator: no 500, so nothing is in doubt.
            assert sim.status_count(500) == 0, route
            doubtful = [f for f, r in zip(files, results, strict=True) if r.in_doubt]
            assert not doubtful, (route, [f.name for f in doubtful[:5]])
            print(f"\n{route}: {len(files)} corpus messages, {len(doubtful)} in doubt")
            stored = len(sim.messages(upn, folder.store_id))
            assert len(files) - len(doubtful) <= stored <= len(files)
            if route == "importMime":
                exact = sum(sim.message_mime(upn, r.dest_id) == f.read_bytes()
                            for f, r in zip(files, results, strict=True)
                            if r.ok and r.extra.get("route") == "importMime")
                assert exact == sum(r.ok and r.extra.get("route") == "importMime" for r in results)
    finally:
        sim.stop()
