"""mailtrek: move mailboxes from any IMAP server into Microsoft 365 or another IMAP server."""

__version__ = "0.1.0"
