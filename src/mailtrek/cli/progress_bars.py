"""The rich progress bars :class:`~mailtrek.cli.progress.ProgressView` draws on a terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from mailtrek.cli.progress import clock

if TYPE_CHECKING:
    from mailtrek.cli.progress import ProgressView


def start_bars(view: ProgressView) -> Progress:
    """Start and return the bars: folder, bytes, speed, messages, time left."""
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TextColumn("{task.fields[msgs]}"), RemainingColumn(view),
        transient=False,
    )
    progress.start()
    return progress


class RemainingColumn(ProgressColumn):
    """Time left from messages and bytes (see :class:`ProgressView`)."""

    max_refresh = 1.0

    def __init__(self, view: ProgressView) -> None:
        super().__init__()
        self.view = view

    def render(self, task: Any) -> Text:
        left = self.view.remaining_seconds()
        return Text("-:--:--" if left is None else clock(left), style="progress.remaining")
