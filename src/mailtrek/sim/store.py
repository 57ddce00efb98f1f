"""The simulator's mailbox contents: folders, messages (with MIME) and attachments.

One SQLite database, in memory by default or ``STATE_DIR/sim.sqlite3`` so that a restarted
simulator keeps its mailboxes. Every method takes the lock: tests inspect the store from
their own thread while the server thread writes.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    id TEXT PRIMARY KEY, mailbox TEXT NOT NULL, parent_id TEXT, display_name TEXT NOT NULL,
    well_known TEXT, is_hidden INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS folders_parent ON folders (mailbox, parent_id);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, mailbox TEXT NOT NULL, folder_id TEXT NOT NULL, seq INTEGER NOT NULL,
    internet_message_id TEXT, mime BLOB, mime_exact INTEGER NOT NULL, props TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_folder ON messages (mailbox, folder_id, seq);
CREATE INDEX IF NOT EXISTS messages_imid ON messages (mailbox, internet_message_id);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY, message_id TEXT NOT NULL, seq INTEGER NOT NULL,
    props TEXT NOT NULL, content BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS attachments_message ON attachments (message_id, seq);
"""

# (well-known name, display name) of the folders every new mailbox has under msgfolderroot;
# names as an English-locale Exchange Online mailbox shows them
# (learn.microsoft.com/graph/api/resources/mailfolder, "Use well-known folder names").
DEFAULT_FOLDERS = (
    ("archive", "Archive"),
    ("conversationhistory", "Conversation History"),
    ("deleteditems", "Deleted Items"),
    ("drafts", "Drafts"),
    ("inbox", "Inbox"),
    ("junkemail", "Junk Email"),
    ("outbox", "Outbox"),
    ("sentitems", "Sent Items"),
)

# Hidden system folders under msgfolderroot in Exchange Online: a mail folder of the same
# name cannot be created there (IMAP shows "NO Folder name is reserved" for Files).
RESERVED_ROOT_NAMES = frozenset(
    name.casefold()
    for name in (
        "Files", "Calendar", "Contacts", "Tasks", "Notes", "Journal", "Sync Issues",
        "Conversation Action Settings", "Quick Step Settings", "RSS Feeds", "Yammer Root",
        "ExternalContacts", "PersonMetadata", "Recipient Cache", "Social Activity Notifications",
    )
)


class FolderExistsError(Exception):
    """A sibling folder with the same case-insensitive name exists (or it is reserved)."""


def new_id(kind: str) -> str:
    """Return a fresh opaque Graph-style id (base64url, like Exchange's AAMk... ids)."""
    raw = kind.encode() + uuid.uuid4().bytes + uuid.uuid4().bytes
    return "AAMk" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass
class Folder:
    """One mail folder row."""

    id: str
    mailbox: str
    parent_id: str | None
    display_name: str
    well_known: str | None
    is_hidden: bool


@dataclass
class StoredMessage:
    """One message row; ``props`` holds the Graph properties as JSON values."""

    id: str
    mailbox: str
    folder_id: str
    mime: bytes | None
    mime_exact: bool
    props: dict[str, Any]


@dataclass
class StoredAttachment:
    """One attachment row."""

    id: str
    message_id: str
    props: dict[str, Any]
    content: bytes


class MailStore:
    """Folders, messages and attachments of every simulated mailbox."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        if path:
            # Survives a killed simulator (what tests do); an fsync per write made the
            # store the simulator's main cost with many mailboxes at once.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self._seq = int(
            self._db.execute(
                "SELECT max(s) FROM (SELECT max(seq) s FROM folders UNION ALL "
                "SELECT max(seq) FROM messages UNION ALL SELECT max(seq) FROM attachments)"
            ).fetchone()[0]
            or 0
        )

    def close(self) -> None:
        """Close the database; the store is unusable afterwards."""
        with self._lock:
            self._db.close()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ----- folders -------------------------------------------------------------------
    def ensure_mailbox(self, mailbox: str) -> None:
        """Create msgfolderroot and the default folders unless the mailbox has them. Idempotent."""
        with self._lock:
            if self.well_known(mailbox, "msgfolderroot"):
                return
            root = new_id("root")
            self._insert_folder(Folder(root, mailbox, None, "Top of Information Store",
                                       "msgfolderroot", False))
            for well_known, name in DEFAULT_FOLDERS:
                self._insert_folder(Folder(new_id("f"), mailbox, root, name, well_known, False))
            self._db.commit()

    def _insert_folder(self, folder: Folder) -> None:
        self._db.execute(
            "INSERT INTO folders VALUES (?,?,?,?,?,?,?)",
            (folder.id, folder.mailbox, folder.parent_id, folder.display_name,
             folder.well_known, int(folder.is_hidden), self._next_seq()),
        )

    @staticmethod
    def _folder(row: tuple[Any, ...]) -> Folder:
        return Folder(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def well_known(self, mailbox: str, name: str) -> Folder | None:
        """Return the folder with well-known name ``name`` (case-insensitive), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, mailbox, parent_id, display_name, well_known, is_hidden FROM folders "
                "WHERE mailbox=? AND well_known=?", (mailbox, name.lower()),
            ).fetchone()
        return self._folder(row) if row else None

    def folder(self, mailbox: str, folder_id: str) -> Folder | None:
        """Return the folder by id or well-known name, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, mailbox, parent_id, display_name, well_known, is_hidden FROM folders "
                "WHERE mailbox=? AND id=?", (mailbox, folder_id),
            ).fetchone()
        if row:
            return self._folder(row)
        return self.well_known(mailbox, folder_id)

    def children(self, mailbox: str, parent_id: str, include_hidden: bool = False) -> list[Folder]:
        """Return the child folders of ``parent_id`` in creation order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, mailbox, parent_id, display_name, well_known, is_hidden FROM folders "
                "WHERE mailbox=? AND parent_id=? ORDER BY seq", (mailbox, parent_id),
            ).fetchall()
        folders = [self._folder(r) for r in rows]
        return [f for f in folders if include_hidden or not f.is_hidden]

    def create_folder(self, mailbox: str, parent: Folder, name: str, hidden: bool) -> Folder:
        """Create a child folder; raise FolderExistsError on a case-insensitive clash."""
        with self._lock:
            wanted = name.casefold()
            if parent.well_known == "msgfolderroot" and wanted in RESERVED_ROOT_NAMES:
                raise FolderExistsError(name)
            for sibling in self.children(mailbox, parent.id, include_hidden=True):
                if sibling.display_name.casefold() == wanted:
                    raise FolderExistsError(name)
            folder = Folder(new_id("f"), mailbox, parent.id, name, None, hidden)
            self._insert_folder(folder)
            self._db.commit()
            return folder

    def delete_folder(self, folder: Folder) -> None:
        """Remove a folder with its subfolders, messages and attachments."""
        with self._lock:
            doomed, todo = [], [folder.id]
            while todo:
                fid = todo.pop()
                doomed.append(fid)
                todo += [r[0] for r in self._db.execute(
                    "SELECT id FROM folders WHERE parent_id=?", (fid,))]
            for fid in doomed:
                self._db.execute("DELETE FROM attachments WHERE message_id IN "
                                 "(SELECT id FROM messages WHERE folder_id=?)", (fid,))
                self._db.execute("DELETE FROM messages WHERE folder_id=?", (fid,))
                self._db.execute("DELETE FROM folders WHERE id=?", (fid,))
            self._db.commit()

    def all_folders(self, mailbox: str) -> list[Folder]:
        """Return every folder of the mailbox (inspection helper)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, mailbox, parent_id, display_name, well_known, is_hidden FROM folders "
                "WHERE mailbox=? ORDER BY seq", (mailbox,),
            ).fetchall()
        return [self._folder(r) for r in rows]

    def folder_counts(self, folder_id: str) -> tuple[int, int, int]:
        """Return (child folders, items, unread items) of a folder."""
        with self._lock:
            children = self._db.execute(
                "SELECT count(*) FROM folders WHERE parent_id=?", (folder_id,)).fetchone()[0]
            rows = self._db.execute(
                "SELECT props FROM messages WHERE folder_id=?", (folder_id,)).fetchall()
        unread = sum(1 for (p,) in rows if not json.loads(p).get("isRead"))
        return children, len(rows), unread

    # ----- messages ------------------------------------------------------------------
    def add_message(self, message: StoredMessage) -> None:
        """Insert a message (its id must be new)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?)",
                (message.id, message.mailbox, message.folder_id, self._next_seq(),
                 message.props.get("internetMessageId"), message.mime, int(message.mime_exact),
                 json.dumps(message.props)),
            )
            self._db.commit()

    def update_props(self, message_id: str, props: dict[str, Any]) -> None:
        """Replace the stored Graph properties of a message."""
        with self._lock:
            self._db.execute(
                "UPDATE messages SET props=?, internet_message_id=? WHERE id=?",
                (json.dumps(props), props.get("internetMessageId"), message_id),
            )
            self._db.commit()

    @staticmethod
    def _message(row: tuple[Any, ...]) -> StoredMessage:
        return StoredMessage(row[0], row[1], row[2], row[3], bool(row[4]), json.loads(row[5]))

    def message(self, mailbox: str, message_id: str) -> StoredMessage | None:
        """Return one message of the mailbox, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, mailbox, folder_id, mime, mime_exact, props FROM messages "
                "WHERE mailbox=? AND id=?", (mailbox, message_id),
            ).fetchone()
        return self._message(row) if row else None

    def messages(self, mailbox: str, folder_id: str | None = None,
                 internet_message_id: str | None = None) -> list[StoredMessage]:
        """Return messages of a mailbox (or one folder), oldest stored first."""
        sql = "SELECT id, mailbox, folder_id, mime, mime_exact, props FROM messages WHERE mailbox=?"
        args: list[Any] = [mailbox]
        if folder_id is not None:
            sql += " AND folder_id=?"
            args.append(folder_id)
        if internet_message_id is not None:
            sql += " AND internet_message_id=?"
            args.append(internet_message_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [self._message(r) for r in rows]

    # ----- attachments ---------------------------------------------------------------
    def add_attachment(self, attachment: StoredAttachment) -> None:
        """Insert an attachment of an existing message."""
        with self._lock:
            self._db.execute(
                "INSERT INTO attachments VALUES (?,?,?,?,?)",
                (attachment.id, attachment.message_id, self._next_seq(),
                 json.dumps(attachment.props), attachment.content),
            )
            self._db.commit()

    def attachments(self, message_id: str) -> list[StoredAttachment]:
        """Return a message's attachments in creation order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, message_id, props, content FROM attachments WHERE message_id=? "
                "ORDER BY seq", (message_id,),
            ).fetchall()
        return [StoredAttachment(r[0], r[1], json.loads(r[2]), r[3]) for r in rows]

    def drop_mime(self, message_id: str) -> None:
        """Forget a message's stored MIME (it will be synthesised from properties)."""
        with self._lock:
            self._db.execute("UPDATE messages SET mime=NULL, mime_exact=0 WHERE id=?", (message_id,))
            self._db.commit()

    def delete_message(self, message_id: str) -> None:
        """Remove a message and its attachments."""
        with self._lock:
            self._db.execute("DELETE FROM attachments WHERE message_id=?", (message_id,))
            self._db.execute("DELETE FROM messages WHERE id=?", (message_id,))
            self._db.commit()

    def move_message(self, message_id: str, folder_id: str) -> str:
        """Move a message to another folder under a new id (as Exchange does); return it."""
        moved = new_id("m")
        with self._lock:
            self._db.execute("UPDATE messages SET id=?, folder_id=?, seq=? WHERE id=?",
                             (moved, folder_id, self._next_seq(), message_id))
            self._db.execute("UPDATE attachments SET message_id=? WHERE message_id=?",
                             (moved, message_id))
            self._db.commit()
        return moved
