"""Gmail and Google Workspace sources: label strategies, download quota, OAuth."""

from mailtrek.stores.gmail.labels import Strategy, looks_like_gmail, plan_view
from mailtrek.stores.gmail.pacing import Deferral, DownloadBudget
from mailtrek.stores.gmail.store import GmailSource, has_gmail_extensions

__all__ = ["Deferral", "DownloadBudget", "GmailSource", "Strategy", "has_gmail_extensions",
           "looks_like_gmail", "plan_view"]
