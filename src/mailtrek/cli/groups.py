"""The command groups several modules add commands to: endpoint, tenant, batch, cutover.

Defined here, apart from any command, so that modules adding to a group import this
module and not each other.
"""

from __future__ import annotations

import typer

endpoint_app = typer.Typer(help="IMAP servers mailboxes come from (or go to).", no_args_is_help=True)
tenant_app = typer.Typer(help="Microsoft 365 tenants mailboxes go to.", no_args_is_help=True)
batch_app = typer.Typer(help="Batches of users: create, start, watch, complete.", no_args_is_help=True)
cutover_app = typer.Typer(help="Check the MX cutover of a domain.", no_args_is_help=True)
