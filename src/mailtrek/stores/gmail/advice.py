"""What to change when Google refuses an IMAP login: the server's words -> the setting.

Google's IMAP answers carry a reason (``[ALERT] Application-specific password
required``, ``[WEBALERT ...] Web login required``, ...); each maps to one setting the
user or the Workspace admin must change. Pure; used for error hints and presets.
"""

from __future__ import annotations

_ADVICE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("application-specific password required",),
     "the account has 2-Step Verification: create an app password at myaccount.google.com "
     "> Security > 2-Step Verification > App passwords and use it instead of the account "
     "password"),
    (("web login required", "webalert", "log in via your web browser",
      "please log in via your web browser"),
     "Google held the sign-in as suspicious: sign in once at https://mail.google.com from a "
     "browser, confirm it was you, then retry (Workspace admins can use XOAUTH2 with a "
     "service account instead)"),
    (("not enabled for imap", "imap access is disabled", "imap is disabled",
      "imap access disabled"),
     "IMAP is off: turn it on in Gmail Settings > Forwarding and POP/IMAP > IMAP access; "
     "Workspace admins allow it in the Admin console > Apps > Google Workspace > Gmail > "
     "End User Access > POP and IMAP access"),
    (("too many simultaneous connections",),
     "Gmail allows 15 IMAP connections per user: lower --connections (or the endpoint's "
     "per-mailbox connections) and close other mail clients"),
    (("exceeded command or bandwidth limits", "[throttled]"),
     "Gmail is throttling this account (daily download quota 2,500 MB): mailtrek waits and "
     "continues; nothing to change"),
    (("invalid credentials", "authenticationfailed", "username and password not accepted"),
     "Google refused the password: use an app password (2-Step Verification on) or, for "
     "Google Workspace, XOAUTH2 with a service account and domain-wide delegation; plain "
     "account passwords no longer work for IMAP"),
)


def google_login_advice(server_text: str) -> str | None:
    """Return the setting to change for Google's refusal ``server_text``, or None."""
    low = server_text.lower()
    for needles, advice in _ADVICE:
        if any(n in low for n in needles):
            return advice
    return None


def is_google_host(host: str) -> bool:
    """True for Google's IMAP hosts (imap.gmail.com, imap.googlemail.com)."""
    h = host.lower().rstrip(".")
    return h.endswith((".gmail.com", ".googlemail.com")) or h in ("gmail.com", "googlemail.com")
