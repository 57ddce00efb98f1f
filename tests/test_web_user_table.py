"""The batch page's user table at 200+ users: filter, sort, page; the live part keeps the view."""

from __future__ import annotations

from mailtrek.web.user_table import PAGE_SIZE, user_table


def users(n: int) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for i in range(n):
        out.append({"email": f"user{i:03d}@example.com", "status": "Failed" if i % 10 == 3 else "Synced",
                    "items_synced": (i * 37) % 101, "bytes": i * 1000, "items_skipped": 0,
                    "last_sync": None if i % 7 == 0 else f"2026-12-0{1 + i % 3}T00:00:00+00:00",
                    "next_sync": None, "error": "login refused" if i % 10 == 3 else None})
    return out


def test_pages_of_fifty_cover_everyone_once() -> None:
    all_users = users(230)
    seen = []
    for p in range(1, 6):
        t = user_table(all_users, {"page": str(p)})
        assert t.pages == 5 and t.page == p and t.total == 230
        seen += [u["email"] for u in t.rows]
    assert len(seen) == 230 and len(set(seen)) == 230 and seen == sorted(seen)
    assert len(user_table(all_users, {}).rows) == PAGE_SIZE
    assert user_table(all_users, {"page": "99"}).page == 5  # clamped, never empty
    assert user_table(all_users, {"page": "x"}).page == 1


def test_filter_by_status_and_text() -> None:
    t = user_table(users(230), {"status": "Failed"})
    assert t.matching == 23 and {u["status"] for u in t.rows} == {"Failed"}
    t = user_table(users(230), {"q": "LOGIN"})
    assert t.matching == 23  # the error text matches too, case folded
    t = user_table(users(230), {"q": "user12"})
    assert [u["email"] for u in t.rows][:2] == ["user120@example.com", "user121@example.com"]


def test_sort_by_items_descending_with_missing_values_last() -> None:
    t = user_table(users(230), {"sort": "-items", "page": "1"})
    got = [u["items_synced"] for u in t.rows]
    assert got == sorted(got, reverse=True) and got[0] == 100
    t = user_table(users(230), {"sort": "last_sync", "page": "5"})
    assert all(u["last_sync"] is None for u in t.rows[-5:])
    assert user_table(users(5), {"sort": "nonsense"}).sort == "email"


def test_query_string_keeps_the_view() -> None:
    t = user_table(users(230), {"status": "Synced", "sort": "-size", "page": "2"})
    assert t.query(page=3) == "?status=Synced&sort=-size&page=3"
    assert user_table(users(3), {}).query() == ""
