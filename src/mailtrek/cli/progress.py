"""Progress bars on a terminal (rich), silence elsewhere."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class ProgressView:
    """Receives the engine's progress events and draws them when enabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: Any = None
        self._msgs = 0
        self._total_msgs = 0

    def __enter__(self) -> ProgressView:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TextColumn("{task.fields[msgs]}"), TimeRemainingColumn(),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def event(self, kind: str, **fields: Any) -> None:
        """Handle one engine event (``plan``, ``folder``, ``message``, ``done``)."""
        p = self._progress
        if p is None:
            return
        if kind == "plan":
            self._total_msgs = fields.get("messages", 0)
            self._task = p.add_task("copying", total=fields.get("bytes", 0) or None,
                                    msgs=f"0/{self._total_msgs} msgs")
        elif kind == "folder" and self._task is not None:
            p.update(self._task, description=str(fields.get("name", ""))[:30])
        elif kind == "message" and self._task is not None:
            self._msgs += 1
            p.update(self._task, advance=fields.get("size", 0),
                     msgs=f"{self._msgs}/{self._total_msgs} msgs")
        elif kind == "done" and self._task is not None:
            p.update(self._task, description="done")
