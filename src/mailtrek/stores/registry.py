"""The one place stores are opened: a spec's ``kind`` picks the backend that builds it.

After rclone's ``fs.Register``/``NewFs``: each backend package registers an opener for
its kind (``register("imap", open_imap)`` in ``stores/imap/opener.py``), and
:func:`open_store` builds the store a :mod:`~mailtrek.stores.spec` describes. Backends are
imported on first use, so a command that never opens Graph never imports it.

Adding a backend: one package with its spec class and opener, plus one line in
``BACKENDS``. Contacts and calendars stores (``PimSpec`` subclasses: ``DavSpec``,
``GraphPimSpec``) open the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mailtrek.errors import UsageError
from mailtrek.stores.spec import MailSpec, PimSpec, S, StoreSpec

if TYPE_CHECKING:
    from mailtrek.pim.model import PimDestination
    from mailtrek.stores.base import DestinationStore, SourceStore

Opener = Callable[[Any], Any]


class RunReport(Protocol):
    """What :func:`note_deferral` writes into (``sync.options.CopyReport``)."""

    errors: list[str]
    resume_at: datetime | None


# kind -> the module whose import registers its opener
BACKENDS: dict[str, str] = {
    "imap": "mailtrek.stores.imap.opener",
    "graph": "mailtrek.stores.m365.opener",
    "graph-pim": "mailtrek.stores.m365.pim_opener",
    "memory": "mailtrek.stores.memory",
    "dav": "mailtrek.stores.dav.opener",
}

_openers: dict[str, Opener] = {}


def register(kind: str, opener: Opener) -> None:
    """Make ``opener(spec)`` the way to build stores of ``kind`` (a later call replaces it)."""
    _openers[kind] = opener


def opener_for(kind: str) -> Opener:
    """Return the opener of ``kind``, importing its backend on first use; UsageError if none."""
    if kind not in _openers and kind in BACKENDS:
        importlib.import_module(BACKENDS[kind])
    try:
        return _openers[kind]
    except KeyError:
        raise UsageError(f"no store backend for {kind!r}",
                         hint="known: " + ", ".join(sorted(set(BACKENDS) | set(_openers)))) from None


def open_store(spec: StoreSpec[S]) -> S:
    """Return the unconnected store ``spec`` describes (an ``ImapSpec`` gives an ``ImapStore``…).

    Raises UsageError when no backend opens the spec's kind.
    """
    if not isinstance(spec, StoreSpec):
        raise TypeError(f"not a store spec: {type(spec).__name__}")
    store: S = opener_for(spec.kind)(spec)
    return store


def open_source(spec: MailSpec) -> SourceStore:
    """Return the unconnected mail store ``spec`` describes, to read from."""
    store: SourceStore = opener_for(spec.kind)(spec)
    return store


def open_destination(spec: MailSpec) -> DestinationStore:
    """Return the unconnected mail store ``spec`` describes, to write into."""
    store: DestinationStore = opener_for(spec.kind)(spec)
    return store


def open_pim_store(spec: PimSpec[Any]) -> PimDestination:
    """Return the unconnected contacts-and-calendars store ``spec`` describes."""
    store: PimDestination = opener_for(spec.kind)(spec)
    return store


async def source_view(source: SourceStore, gmail_labels: str, *, atom_keywords: bool, done: Any = None,
                      quota_dir: Path | None = None) -> Any:
    """Return what to read from the connected ``source``: itself, or the Gmail view over it.

    The one place the Gmail view is applied (``--gmail-labels``/the batch option ``mode``).
    """
    from mailtrek.stores.gmail.wiring import gmail_view

    return await gmail_view(source, gmail_labels, done=done, atom_keywords=atom_keywords,
                            quota_dir=quota_dir)


def note_deferral(view: Any, report: RunReport) -> None:
    """Say in ``report`` when a source's daily quota held work back, and when it goes on."""
    from mailtrek.stores.gmail.store import GmailSource

    deferral = view.deferral if isinstance(view, GmailSource) else None
    if deferral is not None:
        report.errors.append(deferral.describe())
        report.resume_at = deferral.resume_at
