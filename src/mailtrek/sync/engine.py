"""Copy one mailbox: list both sides, plan, execute, record. (Being written.)"""

from __future__ import annotations

from collections.abc import Callable

from mailtrek.state.db import MailboxState
from mailtrek.stores.base import DestinationStore, SourceStore
from mailtrek.sync.options import CopyOptions, CopyReport

# progress(event, **fields): "folder" (name, total, bytes), "message" (folder, size), "done"
ProgressCallback = Callable[..., None]


async def copy_mailbox(
    source: SourceStore,
    dest: DestinationStore,
    state: MailboxState,
    options: CopyOptions,
    *,
    progress: ProgressCallback | None = None,
) -> CopyReport:
    """Copy every selected message of ``source`` to ``dest`` exactly once.

    Idempotent: a re-run copies only what is missing and re-syncs changed flags.
    Raises AuthenticationError/ConnectionFailedError for problems that stop the
    whole mailbox; per-item problems end up in ``CopyReport.skipped``.
    """
    raise NotImplementedError
