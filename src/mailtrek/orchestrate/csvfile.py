"""Read and validate a users CSV exactly as Exchange's IMAP migration accepts it.

Columns: ``EmailAddress`` (the destination mailbox), ``UserName`` (the source login,
possibly in an admin format), ``Password``, optional ``UserRoot``, and optional ``Items``
(mailtrek's own: ``mail``, ``calendars``, ``contacts`` in any mix, e.g. ``mail+contacts``;
blank: the batch's ``--items``). The whole file is
checked before anything starts; every problem is reported with its line number.
Commas or semicolons separate the fields (Excel writes semicolons in many locales): the
header line decides. Two rows with the same source UserName are refused, since they would
copy one source mailbox into two.
Passwords never appear in a problem's text. Password may be empty only when the caller
says so (``allow_empty_password``: the source endpoint logs users in with a Google
Workspace service account); the column itself stays required, as Exchange wants it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from mailtrek.errors import UsageError
from mailtrek.orchestrate.option_text import items_option
from mailtrek.secrets import remember

REQUIRED = ("EmailAddress", "UserName", "Password")
OPTIONAL = ("UserRoot", "Items")
MAX_ROWS = 50_000  # Exchange's limit per batch CSV (m365.md C2)
MAX_BYTES = 10 * 1024 * 1024

# Deliberately simple: one @, a non-empty local part, a dotted domain, no spaces.
_ADDRESS = re.compile(r"^[^@\s,;<>()\[\]\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


@dataclass(frozen=True, slots=True)
class AdminLogin:
    """A source login that opens ``user``'s mailbox with ``admin``'s credentials."""

    style: str  # "dovecot" (user*admin) | "exchange" (domain/admin/user) | "mirapoint"
    user: str
    admin: str


@dataclass(frozen=True, slots=True)
class UserRow:
    """One validated line of the CSV."""

    line: int
    email: str
    username: str
    password: str
    user_root: str | None = None
    items: tuple[str, ...] | None = None  # None: what the batch moves

    @property
    def admin_login(self) -> AdminLogin | None:
        return parse_admin_login(self.username)

    def __repr__(self) -> str:  # keep the password out of tracebacks and debug output
        return f"UserRow(line={self.line}, email={self.email!r}, username={self.username!r})"


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int  # 0 for the whole file
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


class CsvInvalidError(UsageError):
    """The CSV has problems; ``problems`` lists every one."""

    def __init__(self, problems: list[CsvProblem]) -> None:
        shown = "\n".join(f"  {p}" for p in problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(
            f"the users CSV has {len(problems)} problem(s):\n{shown}{more}",
            hint="fix the file and run the command again; nothing was changed",
        )
        self.problems = problems


def parse_admin_login(username: str) -> AdminLogin | None:
    """Recognise the admin login formats Exchange documents (m365.md C2), else None."""
    m = re.fullmatch(r"#([^#]+)#([^#]+)#", username)
    if m:
        return AdminLogin("mirapoint", m.group(1), m.group(2))
    if username.count("*") == 1:
        user, admin = username.split("*")
        if user and admin:
            return AdminLogin("dovecot", user, admin)
    parts = username.split("/")
    if len(parts) == 3 and all(parts):
        return AdminLogin("exchange", parts[2], parts[1])
    return None


def is_address(text: str) -> bool:
    return bool(_ADDRESS.match(text)) and len(text) <= 320


def read_users_csv(path: str | Path, *, allow_unknown_columns: bool = False,
                   allow_empty_password: bool = False) -> list[UserRow]:
    """Return every row of the CSV at ``path``; raise CsvInvalidError listing all problems."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise CsvInvalidError([CsvProblem(0, f"the file is {size:,} bytes; the limit is {MAX_BYTES:,} (10 MB): split it into several batches")])
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    return parse_users_csv(data, allow_unknown_columns=allow_unknown_columns,
                           allow_empty_password=allow_empty_password)


def parse_users_csv(data: bytes, *, allow_unknown_columns: bool = False,
                    allow_empty_password: bool = False) -> list[UserRow]:
    """Validate CSV bytes (UTF-8, BOM optional) and return the rows, or raise CsvInvalidError."""
    if len(data) > MAX_BYTES:
        raise CsvInvalidError([CsvProblem(0, f"the file is {len(data):,} bytes; the limit is {MAX_BYTES:,} (10 MB)")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CsvInvalidError([CsvProblem(line, "not valid UTF-8: save the file as UTF-8")]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter_of(text))
    problems: list[CsvProblem] = []
    try:
        header = next(reader)
    except StopIteration:
        raise CsvInvalidError([CsvProblem(0, "the file is empty: it needs the header EmailAddress,UserName,Password")]) from None
    except csv.Error as e:
        raise CsvInvalidError([CsvProblem(1, f"unreadable header: {e}")]) from None
    columns = [h.strip() for h in header]
    problems += _check_header(columns, allow_unknown_columns)
    if any(p.line == 1 and "missing" in p.reason for p in problems):
        raise CsvInvalidError(problems)
    index = {name: i for i, name in enumerate(columns) if name in (*REQUIRED, *OPTIONAL)}
    rows: list[UserRow] = []
    seen_email: dict[str, int] = {}
    seen_row: dict[tuple[str, str], int] = {}
    seen_user: dict[str, int] = {}
    count = 0
    while True:
        line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(CsvProblem(line, f"unreadable CSV ({e})"))
            break
        line = reader.line_num  # a quoted field may span lines: report where the row ends
        if not record or all(not f.strip() for f in record):
            continue  # blank lines are harmless
        count += 1
        if count > MAX_ROWS:
            problems.append(CsvProblem(line, f"more than {MAX_ROWS:,} rows: split the users into several batches"))
            break
        if len(record) != len(columns):
            problems.append(CsvProblem(line, f"has {len(record)} fields, the header has {len(columns)}"))
            continue
        row, row_problems = _check_row(line, record, index, allow_empty_password)
        problems += row_problems
        if row is None:
            continue
        key = row.email.lower()
        if (key, row.username) in seen_row:
            problems.append(CsvProblem(line, f"duplicate row: same as line {seen_row[key, row.username]}"))
            continue
        if key in seen_email:
            problems.append(CsvProblem(line, f"duplicate EmailAddress {row.email}: already on line {seen_email[key]}"))
            continue
        if row.username.lower() in seen_user:
            problems.append(CsvProblem(line, f"duplicate UserName {row.username}: already on line "
                                             f"{seen_user[row.username.lower()]} (one source mailbox would be "
                                             "copied into two)"))
            continue
        seen_row[key, row.username] = line
        seen_email[key] = line
        seen_user[row.username.lower()] = line
        rows.append(row)
    if not rows and not problems:
        problems.append(CsvProblem(0, "the file has a header but no users"))
    if problems:
        raise CsvInvalidError(problems)
    return rows


def delimiter_of(text: str) -> str:
    """Return the field separator of a CSV text: ``;`` when its header has more of them than commas."""
    header = text.split("\n", 1)[0]
    return ";" if header.count(";") > header.count(",") else ","


def _check_header(columns: list[str], allow_unknown: bool) -> list[CsvProblem]:
    if any(is_address(c) for c in columns):
        # The header was left out: line 1 is a user, and its password must not be echoed back.
        return [CsvProblem(1, "this looks like a user, not the header: the header is missing "
                              f"(put {','.join(REQUIRED)} first)")]
    out = []
    lower = {c.lower(): c for c in columns}
    for name in REQUIRED:
        if name not in columns:
            near = lower.get(name.lower())
            tip = f" (found {near!r}: the spelling must be exact)" if near else ""
            out.append(CsvProblem(1, f"missing column {name}{tip}"))
    known = (*REQUIRED, *OPTIONAL)
    for c in columns:
        if c not in known and c.lower() not in {k.lower() for k in known} and not allow_unknown:
            out.append(CsvProblem(1, f"unknown column {c!r}: allowed are {', '.join(known)}"))
    dupes = {c for c in columns if columns.count(c) > 1}
    for c in sorted(dupes):
        out.append(CsvProblem(1, f"column {c} appears more than once"))
    return out


def _check_row(line: int, record: list[str], index: dict[str, int],
               allow_empty_password: bool = False) -> tuple[UserRow | None, list[CsvProblem]]:
    email = record[index["EmailAddress"]].strip()
    username = record[index["UserName"]].strip()
    password = record[index["Password"]]  # kept exactly: spaces can be part of a password
    root = record[index["UserRoot"]].strip() if "UserRoot" in index else ""
    items_text = record[index["Items"]].strip() if "Items" in index else ""
    remember(password)
    problems = []
    items: tuple[str, ...] | None = None
    if items_text:
        try:
            items = tuple(items_option(items_text, "Items"))
        except UsageError as e:
            problems.append(CsvProblem(line, e.message))
    if not email:
        problems.append(CsvProblem(line, "EmailAddress is empty"))
    elif not is_address(email):
        problems.append(CsvProblem(line, f"EmailAddress {email!r} is not an e-mail address"))
    if not username:
        problems.append(CsvProblem(line, "UserName is empty"))
    elif any(ch.isspace() for ch in username):
        problems.append(CsvProblem(line, f"UserName {username!r} contains white space"))
    if not password and not allow_empty_password:
        problems.append(CsvProblem(line, "Password is empty"))
    if problems:
        return None, problems
    return UserRow(line, email, username, password, root or None, items), []
