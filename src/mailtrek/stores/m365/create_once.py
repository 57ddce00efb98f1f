"""Create a Graph object at most once: look it up by its source key, POST, and on a lost
answer look it up again and adopt what the POST made.

Both PIM paths (events and contacts in ``pim_store``, tasks in ``pim_tasks``) tie each
object to its source UID, so a POST whose answer was lost (``InDoubtError``: sent, may
have taken effect) is resolved by asking again, with a fresh lookup that does not trust
what was listed before the POST, instead of being retried into a twin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mailtrek.stores.m365.api import InDoubtError

Find = Callable[[bool], Awaitable[str | None]]
"""The href of the object carrying the key, or None; ``True``: ask the server afresh."""
Post = Callable[[], Awaitable[tuple[str, dict[str, Any]]]]
"""Create the object (and what it needs first); its href and Graph's answer."""
Remember = Callable[[str], None]
"""Index the object's href under its key (made or adopted), so the next lookup finds it."""


@dataclass(frozen=True)
class Created:
    """What ``create_once`` ended with: ``href``, and Graph's ``answer`` when this call
    made the object (None when it was there already and is to be adopted)."""

    href: str
    answer: dict[str, Any] | None = None


async def create_once(find: Find, post: Post, remember: Remember) -> Created:
    """Adopt the object ``find`` knows, else ``post`` it; a POST whose answer was lost is
    looked up again (``find(True)``) and adopted, or re-raised when nothing was made.
    What was made or adopted after a lost answer is handed to ``remember``."""
    found = await find(False)
    if found is not None:
        return Created(found)
    try:
        href, answer = await post()
    except InDoubtError:
        found = await find(True)
        if found is None:
            raise
        remember(found)
        return Created(found)
    remember(href)
    return Created(href, answer)
