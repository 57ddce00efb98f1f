"""The rich progress bars :class:`~mailtrek.cli.progress.ProgressView` draws on a terminal."""

from __future__ import annotations

from typing import Any, Protocol

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class View(Protocol):
    """What the bars ask of :class:`~mailtrek.cli.progress.ProgressView` (no import back)."""

    def remaining_seconds(self, now: float | None = None) -> float | None: ...


def start_bars(view: View) -> Progress:
    """Start and return the bars: folder, bytes, speed, messages, time left."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TextColumn("{task.fields[msgs]}"), RemainingColumn(view),
        transient=False,
    )
    progress.start()
    return progress


class RemainingColumn(ProgressColumn):
    """Time left from messages and bytes (see :class:`~mailtrek.cli.progress.ProgressView`)."""

    max_refresh = 1.0

    def __init__(self, view: View) -> None:
        super().__init__()
        self.view = view

    def render(self, task: Any) -> Text:
        left = self.view.remaining_seconds()
        return Text("-:--:--" if left is None else clock(left), style="progress.remaining")


def clock(seconds: float) -> str:
    """``H:MM:SS`` for a time left."""
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
