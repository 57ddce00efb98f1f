"""Lookups shared by the Graph routes: caller claims, user, mailbox, folder, permission."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from mailtrek.sim.errors import GraphError
from mailtrek.sim.state import DirectoryUser, SimState
from mailtrek.sim.store import Folder


def claims(request: Request) -> dict[str, Any]:
    """Return the validated token claims the gate stored for this request."""
    return request.scope.get("sim.claims", {})


def api_version(request: Request) -> str:
    """Return 'v1.0' or 'beta' from the request path."""
    return "beta" if request.url.path.startswith("/graph/beta") else "v1.0"


def user_not_found(key: str) -> GraphError:
    """Return the directory's 404 for an unknown user (learn.microsoft.com/graph/errors)."""
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{key}' does not exist or one of its queried reference-property "
                      "objects are not present.")


def mailbox_not_enabled() -> GraphError:
    """Return Exchange's answer for a user without a cloud mailbox.

    Code and text as reported in microsoftgraph/microsoft-graph-docs#10481 (research m365.md A7).
    """
    return GraphError(404, "MailboxNotEnabledForRESTAPI",
                      "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")


def directory_user(state: SimState, key: str) -> DirectoryUser:
    """Return the user by id or UPN, or raise 404 Request_ResourceNotFound."""
    user = state.find_user(key)
    if user is None:
        raise user_not_found(key)
    return user


def mailbox(state: SimState, key: str) -> DirectoryUser:
    """Return a user that has a mailbox, or raise the matching Graph error."""
    user = directory_user(state, key)
    if not user.has_mailbox:
        raise mailbox_not_enabled()
    return user


def item_not_found() -> GraphError:
    """Return Exchange's 404 for a missing folder or item."""
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def folder(state: SimState, user: DirectoryUser, key: str) -> Folder:
    """Return the folder by id or well-known name, or raise 404 ErrorItemNotFound."""
    found = state.store.folder(user.id, key)
    if found is None:
        raise item_not_found()
    return found


def require_role(state: SimState, request: Request, role: str) -> None:
    """Raise 403 ErrorAccessDenied unless the caller's token grants ``role``."""
    roles = claims(request).get("roles", [])
    if role not in roles or role in state.denied:
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
