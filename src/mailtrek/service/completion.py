"""Complete a batch after the MX check, and check a domain's cutover (`batch complete`, `cutover check`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailtrek.errors import UsageError
from mailtrek.orchestrate import batches as batch_ops
from mailtrek.orchestrate.cutover import CutoverStatus, check_cutover, completion_blockers
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.states import BatchStatus, check_batch_move
from mailtrek.service.text import blank

__all__ = ["CompletionCheck", "check_completion", "complete", "cutover", "finish_completion"]


@dataclass(slots=True)
class CompletionCheck:
    """What stands between a batch and its completion (now, or at ``when``)."""

    name: str
    when: datetime | None
    problems: list[str] = field(default_factory=list)  # DNS trouble seen
    unsafe: list[str] = field(default_factory=list)  # domains whose MX is not switched (for 72 h)
    left: list[str] = field(default_factory=list)  # users failed or never synced: left out


async def check_completion(home: Home, name: str, *, at: str | None = None, nameserver: str | None = None,
                           expect_mx: list[str] | None = None, at_label: str = "completion",
                           imap_hint: str = "give the expected MX") -> CompletionCheck:
    """Check the MX cutover and the users before completing batch ``name``.

    Completing now from a status that cannot complete fails fast, before any DNS query.
    """
    from mailtrek.orchestrate.members import completion_warnings
    from mailtrek.orchestrate.schedule import parse_when

    b = batch_ops.get_batch(home, name)
    when = parse_when(blank(at), at_label)
    if when is None:
        check_batch_move(b.status, BatchStatus.COMPLETING, "complete")  # fail fast, before DNS
    problems, unsafe = await completion_blockers(
        home, name, nameserver=blank(nameserver), expected_mx=[h for h in (expect_mx or []) if h.strip()],
        imap_hint=imap_hint, at=when)
    return CompletionCheck(name, when, problems, unsafe, completion_warnings(home, name))


def finish_completion(home: Home, check: CompletionCheck) -> batch_ops.Batch:
    """Complete the batch now, or schedule its completion at ``check.when``."""
    from mailtrek.orchestrate.schedule import set_schedule

    if check.when is not None:
        return set_schedule(home, check.name, complete_at=check.when.isoformat())
    return batch_ops.complete_batch(home, check.name)


async def complete(home: Home, name: str, *, force: bool = False, nameserver: str | None = None,
                   expect_mx: list[str] | None = None, yes: bool = False,
                   at: str | None = None) -> dict[str, Any]:
    """Complete batch ``name`` (now, or ``at``) as the dashboard does.

    Raises UsageError listing the reasons when the cutover is not done and not ``force``,
    and listing the failed and never-synced users unless ``yes``.
    """
    check = await check_completion(home, name, at=at, nameserver=nameserver, expect_mx=expect_mx)
    warnings = check.problems + check.unsafe
    if warnings and not force:
        raise UsageError(f"not completing batch {name}: the MX cutover is not done: " + "; ".join(warnings),
                         hint="switch the MX and wait 72 hours, or tick 'force'")
    left = check.left
    if left and not yes:
        raise UsageError(f"not completing batch {name}: {len(left)} user(s) failed or never synced: "
                         + "; ".join(left[:20]),
                         hint="fix and retry them first, or confirm completing without them ('yes')")
    b = finish_completion(home, check)
    if check.when is not None:
        return {"name": name, "status": b.status.value, "complete_at": check.when.isoformat(),
                "warnings": warnings, "left_out": left}
    return {"name": name, "status": b.status.value, "warnings": warnings, "left_out": left}


async def cutover(home: Home, domain: str, *, tenant: str | None = None, nameserver: str | None = None,
                  expect_mx: list[str] | None = None) -> dict[str, Any]:
    """Check a domain's MX cutover; return it as JSON."""
    if not domain.strip():
        raise UsageError("give a domain")
    st: CutoverStatus = await check_cutover(home, domain.strip(), tenant=blank(tenant),
                                            nameserver=blank(nameserver),
                                            expected_mx=[h for h in (expect_mx or []) if h.strip()] or None)
    return st.as_dict()
