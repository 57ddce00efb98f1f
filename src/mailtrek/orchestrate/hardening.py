"""After a batch completes: switch legacy protocols off and take back the access it needed.

A completed batch's report carries a checklist and an Exchange Online PowerShell script for
exactly its Completed users: ``Set-CASMailbox -ImapEnabled $false -PopEnabled $false``, and
the removal of what the migration app was given per mailbox (FullAccess for app-only
IMAP, membership of the group an RBAC-for-Applications management scope filters on).
The app-wide role assignment and scope are removed by commands left commented out, because
other batches of the same migration may still need them.

The script holds addresses, the app's client id and names only: never a password, secret
or token (the tenant's client secret stays encrypted in the database).
"""

from __future__ import annotations

from typing import Any

from mailtrek.orchestrate.batches import get_batch, user_rows
from mailtrek.orchestrate.endpoints import get_tenant
from mailtrek.orchestrate.home import Home
from mailtrek.orchestrate.states import BatchStatus, UserStatus

COMPLETED_BATCH = (BatchStatus.COMPLETED, BatchStatus.COMPLETED_WITH_ERRORS)


def _ps(text: str) -> str:
    """Return ``text`` as a PowerShell single-quoted string (no expansion)."""
    return "'" + text.replace("'", "''") + "'"


def completed_users(home: Home, name: str) -> list[str]:
    """Return the addresses of the users of batch ``name`` whose move is Completed, in CSV order."""
    return [u["email"] for u in user_rows(home, name) if u["status"] == UserStatus.COMPLETED]


def powershell_script(batch: str, users: list[str], *, app_id: str | None = None,
                      left_out: list[str] | None = None) -> str:
    """Return the hardening script for ``users`` of ``batch`` (idempotent to run twice).

    ``left_out`` (users that did not complete) are named in comments, so nobody is
    dropped silently.
    """
    lines = [
        f"# mailtrek: post-migration hardening for batch {batch} ({len(users)} completed user(s)).",
        *([f"# NOT included: {len(left_out)} user(s) whose move did not complete (fix them in a new batch first):"]
          + [f"#   {u}" for u in left_out] if left_out else []),
        "# Run in Exchange Online PowerShell after Connect-ExchangeOnline (Organization Management).",
        "# It holds no password or secret. Review the variables first.",
        "$ErrorActionPreference = 'Stop'",
        f"$AppId = {_ps(app_id or '')}  # the migration app's client id",
        "$ServicePrincipalId = ''  # set when the app had FullAccess for app-only IMAP (New-ServicePrincipal)",
        "$ScopeGroup = ''  # set to the group your RBAC management scope filters on (MemberOfGroup)",
        "$Users = @(",
        *[f"    {_ps(u)}" for u in users],
        ")",
        "foreach ($User in $Users) {",
        "    # Legacy protocols off: the mailbox now lives here; IMAP/POP only widen the attack surface.",
        "    Set-CASMailbox -Identity $User -ImapEnabled $false -PopEnabled $false",
        "    if ($ServicePrincipalId) {",
        "        Remove-MailboxPermission -Identity $User -User $ServicePrincipalId -AccessRights FullAccess "
        "-InheritanceType All -Confirm:$false -ErrorAction SilentlyContinue",
        "    }",
        "    if ($ScopeGroup) {",
        "        # Out of the group, out of the app's management scope.",
        "        Remove-DistributionGroupMember -Identity $ScopeGroup -Member $User -BypassSecurityGroupManagerCheck "
        "-Confirm:$false -ErrorAction SilentlyContinue",
        "    }",
        "    Get-CASMailbox -Identity $User | Select-Object Identity, ImapEnabled, PopEnabled",
        "}",
        "# When no batch needs the app any more, remove its role assignments and scope as well:",
        "# Get-ManagementRoleAssignment -App $AppId | Remove-ManagementRoleAssignment -Confirm:$false",
        "# Get-ManagementScope | Where-Object Name -like 'mailtrek*' | Remove-ManagementScope -Confirm:$false",
        "# Remove-ServicePrincipal -Identity $AppId -Confirm:$false",
    ]
    return "\n".join(lines) + "\n"


def checklist(batch: str, users: list[str], *, tenant: str | None) -> list[str]:
    """Return the post-migration steps, in the order to do them."""
    n = len(users)
    steps = [f"Switch IMAP and POP off for the {n} migrated mailbox(es): run the PowerShell script of this report."]
    if tenant:
        steps.append("Take back the migration app's access: FullAccess / management-scope membership per mailbox "
                     "(the script), then its role assignment and scope once no batch needs them, then delete its "
                     f"client secret in Entra ID and run `mailtrek tenant remove {tenant}`.")
    steps += [
        f"Delete the stored source passwords: `mailtrek batch delete {batch}` removes them and verifies none is left "
        "(copied mail stays; keep this report first).",
        "Have the users revoke the app passwords they gave for the old server, and close the old accounts once "
        "the MX has pointed to the new service for at least 72 hours.",
    ]
    return steps


def hardening_section(home: Home, name: str) -> dict[str, Any] | None:
    """Return the checklist and script of a completed batch; None while it is not completed."""
    b = get_batch(home, name)
    if b.status not in COMPLETED_BATCH:
        return None
    users = completed_users(home, name)
    left = [f"{u['email']} ({u['status']})" for u in user_rows(home, name) if u["status"] != UserStatus.COMPLETED]
    app_id = get_tenant(home, b.tenant).client_id if b.tenant else None
    steps = checklist(name, users, tenant=b.tenant)
    if left:
        steps.insert(0, f"{len(left)} user(s) did not complete and are not in the script: {', '.join(left)}. "
                        "Fix them and migrate them with a new batch (`mailtrek batch export-failed`).")
    return {"users": users, "left_out": left, "checklist": steps,
            "powershell": powershell_script(name, users, app_id=app_id, left_out=left) if b.tenant else None}
