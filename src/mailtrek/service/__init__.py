"""The application layer: what a command or a dashboard action does, once for both front ends.

The CLI (:mod:`mailtrek.cli`) and the web app (:mod:`mailtrek.web`) are leaves: they read
their input (options, forms, JSON), fill in a typed request, call one function here and
render what it returns. Nothing here prints, reads argv or knows HTTP; secrets typed in
are registered for redaction and only ever stored encrypted.

- :mod:`.endpoints`: add, test an IMAP endpoint
- :mod:`.tenants`: add, test a Microsoft 365 tenant
- :mod:`.batches`: create a batch (with source discovery and clean-up), start/stop/resume, list
- :mod:`.members`: one user's actions in a batch
- :mod:`.completion`: complete a batch after the MX check, check a domain's cutover
"""

from __future__ import annotations

__all__ = ["batches", "completion", "endpoints", "members", "tenants"]
