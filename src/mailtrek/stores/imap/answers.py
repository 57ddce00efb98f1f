"""A server's answer that our parsing misreads surfaces as ProtocolError, never a crash."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from mailtrek.errors import ProtocolError
from mailtrek.stores.imap.wire import MalformedResponse

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
# What misreading a server's answer raises in our code: a response of an unexpected
# shape (``UID abc``, a list where an atom belongs, a name that is not UTF-8).
MISREAD = (ValueError, IndexError, KeyError, TypeError, OverflowError)
HINT = "the server sent what IMAP does not allow; leave this mailbox out or ask its admin"


@contextlib.contextmanager
def understood(host: str, what: str) -> Iterator[None]:
    """Turn a misread answer into ProtocolError naming the server and the command."""
    try:
        yield
    except MalformedResponse as e:
        raise ProtocolError(f"{host} sent a malformed answer to {what}: {e.message}",
                            hint=HINT) from e
    except MISREAD as e:
        raise ProtocolError(f"cannot understand {host}'s answer to {what}: "
                            f"{e.__class__.__name__}: {str(e)[:200]}", hint=HINT) from e


def answers(what: str) -> Callable[[F], F]:
    """Decorate a store method (of an object with ``settings.params.host``) so a misread
    answer surfaces as ProtocolError."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            with understood(self.settings.params.host, what):
                return await fn(self, *args, **kwargs)
        return method  # type: ignore[return-value]
    return wrap
