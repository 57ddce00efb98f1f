"""The state database's tables (SQLAlchemy Core). SQLite by default, PostgreSQL later.

Every table that belongs to one mailbox move carries a ``mailbox`` key, so one
database can hold a whole batch. Other modules (orchestration) add their tables to the
same ``metadata``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per source folder of a mailbox move.
folders = Table(
    "folders",
    metadata,
    Column("mailbox", String(512), primary_key=True),
    Column("src_path", Text, primary_key=True),  # FolderInfo.path joined by "\x1f"
    Column("src_uidvalidity", BigInteger),
    Column("src_uidnext", BigInteger),
    Column("src_highestmodseq", BigInteger),
    Column("src_messages", Integer),
    Column("dest_path", Text),
    Column("dest_uidvalidity", BigInteger),
    Column("dest_uidnext", BigInteger),
    Column("dest_messages", Integer),
    Column("dest_store_id", Text),
    Column("complete", Integer, default=0),  # 1 when the last run left nothing to do
)

# One row per source message that is on the destination (or in doubt).
messages = Table(
    "messages",
    metadata,
    Column("mailbox", String(512), primary_key=True),
    Column("src_path", Text, primary_key=True),
    Column("src_uidvalidity", BigInteger, primary_key=True),
    Column("src_uid", BigInteger, primary_key=True),
    Column("dest_id", Text),  # IMAP UID as text, or Graph id; NULL while in doubt
    Column("fingerprint", String(64)),
    Column("size", BigInteger),
    Column("flags", Text),  # flags last written to the destination, space separated
    Column("status", String(16), nullable=False),  # "done" | "in_doubt"
)
