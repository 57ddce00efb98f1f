"""Lookups shared by the Graph routes: caller claims, user, mailbox, folder, permission."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from mailtrek.sim.errors import GraphError
from mailtrek.sim.state import DirectoryUser, SimState
from mailtrek.sim.store import Folder, StoredMessage


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


# Exchange ids are base64 (url-safe in Graph) of a long binary entry id: AAMk... for items
# and folders. Anything else is "malformed", which Exchange tells apart from "not found".
_ID = re.compile(r"^[A-Za-z0-9+/_-]{32,}={0,2}$")

# Well-known folder names, usable instead of an id
# (learn.microsoft.com/graph/api/resources/mailfolder, "Use well-known folder names").
WELL_KNOWN_FOLDERS = frozenset({
    "archive", "clutter", "conflicts", "conversationhistory", "deleteditems", "drafts",
    "inbox", "junkemail", "localfailures", "msgfolderroot", "outbox",
    "recoverableitemsdeletions", "scheduled", "searchfolders", "sentitems",
    "serverfailures", "syncissues",
})


def check_id(key: str) -> None:
    """Raise 400 ErrorInvalidIdMalformed unless ``key`` has the shape of an Exchange id.

    Code and text ("Id is malformed.") as Graph returns them for a bad message, folder or
    attachment id (microsoftgraph/microsoft-graph-docs#2268, invictus-ir/Microsoft-Extractor-Suite#146);
    a well-formed id of no item is 404 ErrorItemNotFound instead.
    """
    if not _ID.match(key):
        raise GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def context_url(request: Request, user_key: str, tail: str) -> str:
    """Return ``@odata.context`` for a resource under a user, as Graph writes it.

    E.g. ``https://graph.microsoft.com/v1.0/$metadata#users('alice%40contoso.com')/messages/$entity``
    (the examples of learn.microsoft.com/graph/api/message-get and user-list-messages).
    """
    user = quote(user_key, safe="")
    return f"https://graph.microsoft.com/{api_version(request)}/$metadata#users('{user}')/{tail}"


def item_not_found() -> GraphError:
    """Return Exchange's 404 for a missing folder or item."""
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def folder(state: SimState, user: DirectoryUser, key: str) -> Folder:
    """Return the folder by id or well-known name; 400 for a malformed id, else 404."""
    if key.lower() not in WELL_KNOWN_FOLDERS:
        check_id(key)
    found = state.store.folder(user.id, key)
    if found is None:
        raise item_not_found()
    return found


def require_role(state: SimState, request: Request, role: str) -> None:
    """Raise 403 ErrorAccessDenied unless the caller's token grants ``role``."""
    roles = claims(request).get("roles", [])
    if role not in roles or role in state.denied:
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")


def message(state: SimState, user_key: str, message_id: str) -> StoredMessage:
    """Return a message of the user's mailbox; 400 for a malformed id, 404 when absent."""
    user = mailbox(state, user_key)
    check_id(message_id)
    found = state.store.message(user.id, message_id)
    if found is None:
        raise item_not_found()
    return found
