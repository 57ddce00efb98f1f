"""``verify`` after a copy into Exchange over IMAP (``m365+imap``, the Exchange-like front).

Messy mail, with byte-identical twins that differ only in flags and INTERNALDATE: every
message arrives once, and verify (with the copy's state, and without it) finds nothing
missing, different or extra; a fresh-state re-run copies nothing and updates no flags
that the route does not carry (issue 12, item 5).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from imap_helpers import load, new_user
from mailtrek.devtools.dovecot import DovecotInstance
from mailtrek.devtools.exchange_front import ExchangeFront
from mailtrek.devtools.samples import messy_messages
from test_cli_copy import mailtrek
from test_copy_m365 import (  # noqa: F401  (fixtures, used by name)
    exchange_imap,
    m365_args,
    m365_env,
    sim,
)
from test_exchange_report_verify import TlsFront


async def test_messy_mail_into_exchange_imap_verifies_clean(
        dovecot_src: DovecotInstance, sim: Any, exchange_imap: DovecotInstance,  # noqa: F811
        tmp_path: Path) -> None:
    src = new_user(dovecot_src, "xv")
    msgs = messy_messages(40)
    await load(dovecot_src, *src, [(m.folder, m.raw, m.flags, m.internaldate) for m in msgs])
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(Path(sim.ca_file).read_text() + Path(exchange_imap.ca_file).read_text())
    ssl_dir = exchange_imap.root / "ssl"
    async with (ExchangeFront("127.0.0.1", exchange_imap.port) as front,
                TlsFront(ssl_dir / "cert.pem", ssl_dir / "key.pem", front.port) as tls):
        common = [f"imap://{src[0]}@127.0.0.1:{dovecot_src.port}", "m365+imap://dave@contoso.test",
                  *m365_args(sim), "--ca-file", str(bundle),
                  "--m365-imap-host", f"127.0.0.1:{tls.port}"]

        def cli(*args: str) -> Any:
            return asyncio.to_thread(mailtrek, *args, env=m365_env(src))

        state = ["--state", str(tmp_path / "s.db")]
        copy = await cli("copy", *common, *state)
        with_state = await cli("verify", *common, *state, "--json-report", str(tmp_path / "a.json"))
        without = await cli("verify", *common, "--state", str(tmp_path / "none.db"),
                            "--json-report", str(tmp_path / "b.json"))
        fresh = await cli("copy", *common, "--state", str(tmp_path / "fresh.db"))
    assert copy.returncode == 0, copy.stdout + copy.stderr
    assert f"copied {len(msgs)} messages" in copy.stdout and " 0 found on the dest" in copy.stdout
    for out, name, by_state in ((with_state, "a.json", len(msgs)), (without, "b.json", 0)):
        t = json.loads((tmp_path / name).read_text())["totals"]
        assert out.returncode == 0, out.stdout
        assert (t["missing"], t["different"], t["extra"]) == (0, 0, 0), out.stdout
        assert t["matched"] == len(msgs) and t["matched_by_state"] == by_state
    assert fresh.returncode == 0 and "copied 0 messages" in fresh.stdout, fresh.stdout
    assert " 0 flag updates" in fresh.stdout, fresh.stdout
