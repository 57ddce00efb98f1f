"""``mailtrek demo``: the main job end to end on embedded defaults.

Starts a private Dovecot with sample mailboxes and the Microsoft 365 simulator, migrates
every mailbox into it, runs the migration again (nothing to do), verifies, and prints
what landed where. ``--to imap`` migrates into a second private Dovecot instead.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mailtrek.cli.common import fail_on_error
from mailtrek.stores.spec import GraphSpec, ImapSpec, MailSpec
from mailtrek.sync.report import summary_line

USERS = (("alice", "contoso.test"), ("bob", "contoso.test"))


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo)


def demo(
    to: Annotated[str, typer.Option("--to", help="m365 (the simulator) or imap")] = "m365",
    workdir: Annotated[Path | None, typer.Option("--workdir", help="keep servers' files here")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="simulator without service latency")] = False,
) -> None:
    """Migrate sample mailboxes from a local IMAP server into Microsoft 365 (simulated)."""
    from mailtrek.devtools.dovecot import DovecotInstance
    from mailtrek.devtools.samples import load_mailbox, sample_mailbox

    if to not in ("m365", "imap"):
        raise typer.BadParameter("--to takes m365 or imap")
    with fail_on_error():
        root = Path(workdir or tempfile.mkdtemp(prefix="mailtrek-demo-"))
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)  # Dovecot's unprivileged processes must reach the users file
        src = DovecotInstance(root / "source", name="demo-src")
        dst = DovecotInstance(root / "dest", name="demo-dst") if to == "imap" else None
        sim = None
        try:
            typer.echo(f"demo: starting a private source IMAP server under {root}")
            src.start()
            mail = sample_mailbox()
            passwords = {}
            for i, (user, _domain) in enumerate(USERS):
                pw = f"demo-{user}-pw"
                src.add_user(user, pw)
                passwords[user] = pw
                load_mailbox(src.host, src.port, user, pw, mail if i == 0 else mail[::2])
            typer.echo(f"demo: seeded {len(mail)} + {len(mail[::2])} sample messages "
                       "(odd MIME, non-ASCII folders, flags, keywords)")
            if dst is not None:
                dst.start()
                for user, _d in USERS:
                    dst.add_user(user, passwords[user])
            else:
                from mailtrek.sim import Latency, SimConfig, Simulator, UserSpec

                cfg = SimConfig(users=[UserSpec(f"{u}@{d}") for u, d in USERS],
                                state_dir=root / "m365",
                                latency=Latency.zero() if fast else Latency())
                sim = Simulator(cfg).start()
                typer.echo(f"demo: Microsoft 365 simulator at {sim.graph_url} "
                           f"(CA {sim.ca_file})")
            ok = asyncio.run(_migrate_all(src, dst, sim, passwords, root))
            if sim is not None:
                _show_m365(sim)
        finally:
            if sim is not None:
                sim.stop()
            for inst in (src, dst):
                if inst is not None:
                    inst.stop()
        typer.echo("demo: " + ("every message is on the destination, verified."
                               if ok else "INCOMPLETE: see above."))
        raise typer.Exit(0 if ok else 1)


async def _migrate_all(src: Any, dst: Any, sim: Any, passwords: dict[str, str],
                       root: Path) -> bool:
    from mailtrek.state.db import MailboxState, open_engine
    from mailtrek.stores.registry import open_destination, open_source
    from mailtrek.sync.engine import copy_mailbox
    from mailtrek.sync.options import CopyOptions
    from mailtrek.sync.verify import verify_mailbox

    engine = open_engine(root / "state.db")
    ok = True
    for user, domain in USERS:
        address = f"{user}@{domain}"
        for attempt in ("first run", "re-run"):
            source = open_source(ImapSpec(host=src.host, port=src.ssl_port, user=user,
                                          password=passwords[user], ca_file=str(src.ca_file),
                                          label="source"))
            dest = open_destination(_dest(dst, sim, user, passwords[user], address))
            await asyncio.gather(source.connect(), dest.connect())
            try:
                t = time.monotonic()
                report = await copy_mailbox(source, dest, MailboxState(engine, address),
                                            CopyOptions())
                report.finished = report.finished or report.started
                typer.echo(f"  {address} ({attempt}, {time.monotonic() - t:.1f} s): "
                           f"{summary_line(report)}")
                ok = ok and report.complete
                if attempt == "re-run":
                    result = await verify_mailbox(source, dest, CopyOptions(),
                                                  MailboxState(engine, address))
                    tot = result["totals"]
                    typer.echo(f"  {address} verify: {tot['matched']}/{tot['source']} matched "
                               f"({tot['matched_by_state']} as the state recorded), "
                               f"{tot['missing']} missing, {tot['different']} different"
                               + (" (byte-exact, flags and dates)" if result["exact_bytes"] else
                                  " (by fingerprint, flags and dates; "
                                  f"{tot['dates_from_headers']} dated from their headers)"))
                    ok = ok and result["ok"]
            finally:
                await asyncio.gather(source.close(), dest.close(), return_exceptions=True)
    return ok


def _dest(dst: Any, sim: Any, user: str, pw: str, address: str) -> MailSpec:
    """The destination's spec: the second Dovecot, or the mailbox in the simulator."""
    if dst is not None:
        return ImapSpec(host=dst.host, port=dst.ssl_port, user=user, password=pw,
                        ca_file=str(dst.ca_file), readonly=False, label="dest")
    from mailtrek.stores.m365 import TenantConfig

    tenant = TenantConfig(tenant_id=sim.config.tenant_id, client_id="mailtrek-demo",
                          client_secret="demo-secret", authority=sim.authority(),
                          graph_url=sim.graph_url, ca_file=sim.ca_file)
    return GraphSpec(mailbox=address, tenant=tenant, label="dest")


def _show_m365(sim: Any) -> None:
    for user, domain in USERS:
        upn = f"{user}@{domain}"
        typer.echo(f"  {upn} in Microsoft 365 (simulated):")
        for f in sim.folders(upn):
            n = len(sim.messages(upn, f.id))
            if n:
                typer.echo(f"    {sim.folder_path(upn, f.id)}: {n} messages")
