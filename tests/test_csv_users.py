"""The users CSV: what Exchange accepts is accepted, everything else is rejected with line numbers."""

from __future__ import annotations

import pytest

from mailtrek.orchestrate.csvfile import (
    MAX_BYTES,
    MAX_ROWS,
    CsvInvalidError,
    parse_admin_login,
    parse_users_csv,
    read_users_csv,
)

GOOD = "EmailAddress,UserName,Password\r\nalice@contoso.test,alice,pw-alice\r\nbob@contoso.test,bob*admin,adminpw\r\n"


def problems(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(CsvInvalidError) as e:
        parse_users_csv(data)
    return [str(p) for p in e.value.problems]


def test_good_file_gives_rows_with_line_numbers():
    rows = parse_users_csv(GOOD.encode())
    assert [(r.line, r.email, r.username) for r in rows] == [
        (2, "alice@contoso.test", "alice"), (3, "bob@contoso.test", "bob*admin")]
    assert rows[0].password == "pw-alice"
    assert "pw-alice" not in repr(rows[0])


def test_bom_and_userroot_and_utf8_accepted():
    text = "\ufeffEmailAddress,UserName,Password,UserRoot\nzoë@contoso.test,zoë,pässwört,/users/zoe\n"
    rows = parse_users_csv(text.encode("utf-8"))
    assert rows[0].email == "zoë@contoso.test" and rows[0].user_root == "/users/zoe"
    assert rows[0].password == "pässwört"


def test_header_order_free_and_blank_lines_ignored():
    rows = parse_users_csv(b"Password,EmailAddress,UserName\n\npw1,a@x.test,a\n\n")
    assert rows[0].email == "a@x.test" and rows[0].line == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EmailAddress,UserName\na@x.test,a\n", ["line 1: missing column Password"]),
        ("emailaddress,UserName,Password\na@x.test,a,p\n",
         ["line 1: missing column EmailAddress (found 'emailaddress': the spelling must be exact)"]),
        ("EmailAddress,UserName,Password,Quota\na@x.test,a,p,1\n", ["line 1: unknown column 'Quota'"]),
        ("EmailAddress,UserName,Password\nnot-an-address,a,p\n", ["line 2: EmailAddress 'not-an-address' is not an e-mail address"]),
        ("EmailAddress,UserName,Password\na@x,a,p\n", ["line 2: EmailAddress 'a@x' is not an e-mail address"]),
        ("EmailAddress,UserName,Password\n,a,p\n", ["line 2: EmailAddress is empty"]),
        ("EmailAddress,UserName,Password\na@x.test,,p\n", ["line 2: UserName is empty"]),
        ("EmailAddress,UserName,Password\na@x.test,a,\n", ["line 2: Password is empty"]),
        ("EmailAddress,UserName,Password\na@x.test,a b,p\n", ["line 2: UserName 'a b' contains white space"]),
        ("EmailAddress,UserName,Password\na@x.test,a,p,extra\n", ["line 2: has 4 fields, the header has 3"]),
        ("EmailAddress,UserName,Password\na@x.test,a\n", ["line 2: has 2 fields, the header has 3"]),
        ("EmailAddress,UserName,Password\na@x.test,a,p\nA@X.test,a,p\n", ["line 3: duplicate row: same as line 2"]),
        ("EmailAddress,UserName,Password\na@x.test,a,p\na@x.test,b,q\n",
         ["line 3: duplicate EmailAddress a@x.test: already on line 2"]),
        ("", ["the file is empty: it needs the header EmailAddress,UserName,Password"]),
        ("EmailAddress,UserName,Password\n", ["the file has a header but no users"]),
        ("EmailAddress,UserName,Password\na@x.test,a,\"unterminated\n", ["line 2: unreadable CSV"]),
    ],
)
def test_malformed_files_rejected_with_line_and_reason(text, expected):
    got = problems(text)
    assert len(got) == len(expected), got
    for g, e in zip(got, expected, strict=True):
        assert g.startswith(e), (g, e)


def test_every_problem_reported_not_just_the_first():
    text = ("EmailAddress,UserName,Password\n"
            "good@x.test,good,pw\n"
            "bad,u1,pw\n"
            "c@x.test,,pw\n"
            "good@x.test,good,pw\n"
            "d@x.test,d,\n")
    got = problems(text)
    assert [g.split(":")[0] for g in got] == ["line 3", "line 4", "line 5", "line 6"]


def test_passwords_never_in_problem_text():
    secret = "S3cret-Passw0rd"
    got = problems(f"EmailAddress,UserName,Password\nbad-address,u,{secret}\nbad-address,u,{secret}\n")
    assert got and all(secret not in g for g in got)


def test_file_without_header_does_not_echo_the_first_password():
    """Line 1 is taken for the header: its fields (a password among them) are not quoted back."""
    secret = "Hdr-Less-Pw-4711"
    got = problems(f"alice@contoso.test,alice,{secret}\nbob@contoso.test,bob,pw-bob\n")
    assert got == ["line 1: this looks like a user, not the header: the header is missing "
                   "(put EmailAddress,UserName,Password first)"]
    with pytest.raises(CsvInvalidError) as e:
        parse_users_csv(f"a@contoso.test;a;{secret}\n".encode(), allow_unknown_columns=True)
    assert all(secret not in str(p) for p in e.value.problems)


def test_quoted_fields_with_commas_and_newlines():
    rows = parse_users_csv(b'EmailAddress,UserName,Password\n"a@x.test","a","p,w""x"\n')
    assert rows[0].password == 'p,w"x'


def test_not_utf8_rejected_with_line():
    got = problems(b"EmailAddress,UserName,Password\na@x.test,a,p\nb@x.test,b,\xe9t\xe9\n")
    assert got == ["line 3: not valid UTF-8: save the file as UTF-8"]


def test_too_many_rows():
    lines = ["EmailAddress,UserName,Password"] + [f"u{i}@x.test,u{i},p" for i in range(MAX_ROWS + 1)]
    got = problems("\n".join(lines))
    assert got == [f"line {MAX_ROWS + 2}: more than 50,000 rows: split the users into several batches"]


def test_exactly_max_rows_accepted():
    lines = ["EmailAddress,UserName,Password"] + [f"u{i}@x.test,u{i},p{i}" for i in range(MAX_ROWS)]
    assert len(parse_users_csv("\n".join(lines).encode())) == MAX_ROWS


def test_too_big_file_rejected_before_reading(tmp_path):
    p = tmp_path / "big.csv"
    with p.open("wb") as f:
        f.write(b"EmailAddress,UserName,Password\n")
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(CsvInvalidError) as e:
        read_users_csv(p)
    assert "10 MB" in str(e.value)


def test_missing_file_is_a_usage_error(tmp_path):
    from mailtrek.errors import UsageError

    with pytest.raises(UsageError):
        read_users_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("username", "style", "user", "admin"),
    [
        ("alice*admin", "dovecot", "alice", "admin"),
        ("alice@contoso.test*master", "dovecot", "alice@contoso.test", "master"),
        ("contoso/admin/alice", "exchange", "alice", "admin"),
        ("#alice@contoso.test#admin#", "mirapoint", "alice@contoso.test", "admin"),
    ],
)
def test_admin_formats_recognised(username, style, user, admin):
    a = parse_admin_login(username)
    assert a is not None and (a.style, a.user, a.admin) == (style, user, admin)


@pytest.mark.parametrize("username", ["alice", "alice@contoso.test", "a*b*c", "*admin", "a/b", "#a#"])
def test_plain_logins_are_not_admin_logins(username):
    assert parse_admin_login(username) is None


def test_semicolon_separated_file_from_excel_accepted():
    text = "\ufeffEmailAddress;UserName;Password\r\nalice@contoso.test;alice;pw,with;semicolon\r\n"
    with pytest.raises(CsvInvalidError):  # a ';' inside an unquoted field splits it, as Excel would quote it
        parse_users_csv(text.encode())
    text = "EmailAddress;UserName;Password\r\nalice@contoso.test;alice;\"pw,with;semi\"\r\nbob@contoso.test;bob;b\r\n"
    rows = parse_users_csv(text.encode())
    assert [(r.email, r.username, r.password) for r in rows] == [
        ("alice@contoso.test", "alice", "pw,with;semi"), ("bob@contoso.test", "bob", "b")]


def test_same_source_username_twice_flagged():
    got = problems("EmailAddress,UserName,Password\na@x.test,shared,p1\nb@x.test,Shared,p2\n")
    assert got == ["line 3: duplicate UserName Shared: already on line 2 (one source mailbox would be copied into two)"]


def test_items_column_is_checked_line_by_line():
    from mailtrek.orchestrate.option_text import items_option

    text = ("EmailAddress,UserName,Password,Items\n"
            "a@contoso.test,a,pw,\n"
            "b@contoso.test,b,pw,Contacts+calendar\n"
            'c@contoso.test,c,pw,"mail, contacts"\n')
    rows = parse_users_csv(text.encode())
    assert [r.items for r in rows] == [None, ("calendars", "contacts"), ("mail", "contacts")]
    bad = text + "d@contoso.test,d,pw,mail;tasks\ne@contoso.test,e,pw,notes\n"
    assert problems(bad) == ["line 5: Items takes mail, calendars, contacts, not 'tasks'",
                             "line 6: Items takes mail, calendars, contacts, not 'notes'"]
    assert items_option(None) == items_option(" ") == ["mail"]
    assert items_option("contacts,mail,calendars,mail") == ["mail", "calendars", "contacts"]
