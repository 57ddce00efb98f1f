"""One user's actions in a batch: sync now, stop, resume, retry, remove, move (`batch ... --user`)."""

from __future__ import annotations

from mailtrek.errors import UsageError
from mailtrek.orchestrate import members
from mailtrek.orchestrate.home import Home
from mailtrek.service.text import blank

__all__ = ["USER_ACTIONS", "user_action"]

USER_ACTIONS = ("sync", "stop", "resume", "retry", "remove", "move")


def user_action(home: Home, name: str, email: str, action: str, *, password: str | None = None,
                username: str | None = None, to: str | None = None) -> members.Outcome:
    """Do ``action`` for user ``email`` of batch ``name``; return what became of the user.

    ``retry`` stores a new ``password`` or ``username`` when given (empty keeps the stored
    one); ``move`` needs the batch ``to`` move the user to.
    """
    if action == "sync":
        return members.sync_now(home, name, email)[0]
    if action == "stop":
        return members.stop_user(home, name, email)
    if action == "resume":
        return members.resume_user(home, name, email)
    if action == "retry":
        return members.retry_user(home, name, email, password=password or None, username=username or None)
    if action == "remove":
        return members.remove_user(home, name, email)
    if action == "move":
        target = blank(to)
        if not target:
            raise UsageError("choose the batch to move the user to")
        return members.move_user(home, name, email, target)
    raise UsageError(f"unknown action {action!r}", hint=f"one of: {', '.join(USER_ACTIONS)}")
