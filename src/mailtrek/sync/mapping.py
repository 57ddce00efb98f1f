"""Map source folders to destination folders.

Special folders (by SPECIAL-USE, else by common localised names) land in the
destination's own special folders; every other folder keeps its tree, optionally under
a root. Names the destination cannot hold (its delimiter inside a name, reserved names,
case-insensitive clashes, ``.`` and ``..``) are renamed predictably, and the rename is
reported. A name holding CR, LF or NUL is refused, and the refusal reported: no IMAP
command can carry it as a quoted string, and a hostile server offers such names to
smuggle commands (``x\r\nA1 DELETE INBOX``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailtrek.model import FolderInfo, SpecialUse, has_line_break
from mailtrek.stores.base import StoreFeatures

# Lower-cased folder names (top level, after any namespace prefix) and their role.
_LOCALISED: dict[SpecialUse, tuple[str, ...]] = {
    SpecialUse.SENT: (
        "sent", "sent items", "sent messages", "sent mail", "sent-mail", "outbox.sent",
        "gesendet", "gesendete elemente", "gesendete objekte", "envoyés", "éléments envoyés",
        "messages envoyés", "enviados", "elementos enviados", "posta inviata", "inviati",
        "verzonden", "verzonden items", "отправленные", "送信済み", "送信済みアイテム",
        "已发送", "wysłane", "skickat", "sendt", "lähetetyt",
    ),
    SpecialUse.DRAFTS: (
        "drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten",
        "черновики", "下書き", "草稿", "kopie robocze", "utkast", "kladder", "luonnokset",
    ),
    SpecialUse.TRASH: (
        "trash", "deleted items", "deleted messages", "deleted", "bin", "papierkorb",
        "gelöschte elemente", "gelöschte objekte", "corbeille", "éléments supprimés",
        "papelera", "elementos eliminados", "cestino", "posta eliminata", "prullenbak",
        "verwijderde items", "корзина", "удаленные", "ごみ箱", "已删除", "kosz",
        "papperskorgen", "papirkurv", "roskakori",
    ),
    SpecialUse.JUNK: (
        "junk", "spam", "junk e-mail", "junk email", "junk mail", "bulk mail", "junk-e-mail",
        "spamverdacht", "courrier indésirable", "indésirables", "correo no deseado",
        "posta indesiderata", "ongewenste e-mail", "спам", "迷惑メール", "垃圾邮件",
        "skräppost", "søppelpost", "roskaposti",
    ),
    SpecialUse.ARCHIVE: ("archive", "archives", "archiv", "archivo", "archivio", "архив",
                         "アーカイブ", "存档", "arkiv", "arkisto", "archief"),
}
_BY_NAME = {name: use for use, names in _LOCALISED.items() for name in names}

# Roles that are homes for mail; ALL/FLAGGED/IMPORTANT are views and keep their own tree.
HOME_ROLES = (SpecialUse.INBOX, SpecialUse.SENT, SpecialUse.DRAFTS, SpecialUse.TRASH,
              SpecialUse.JUNK, SpecialUse.ARCHIVE)

# What a special folder is called when the destination has none and we create it.
DEFAULT_NAMES = {
    SpecialUse.INBOX: "INBOX",
    SpecialUse.SENT: "Sent",
    SpecialUse.DRAFTS: "Drafts",
    SpecialUse.TRASH: "Trash",
    SpecialUse.JUNK: "Junk",
    SpecialUse.ARCHIVE: "Archive",
}


def guess_special_use(folder: FolderInfo) -> SpecialUse | None:
    """Return the folder's role: its SPECIAL-USE, else a well-known localised name."""
    if folder.special_use is not None:
        return folder.special_use
    path = folder.path
    if path and path[0].upper() == "INBOX" and len(path) == 2:
        path = path[1:]  # Courier/cPanel style: INBOX.Sent
    if len(path) == 1:
        return _BY_NAME.get(path[0].strip().lower())
    if len(path) == 2 and path[0].lower() in ("[gmail]", "[google mail]"):
        return _BY_NAME.get(path[1].strip().lower().replace("bin", "trash"))
    return None


@dataclass(frozen=True, slots=True)
class FolderMapping:
    """Where one source folder goes."""

    source: FolderInfo
    dest_path: tuple[str, ...]
    special_use: SpecialUse | None  # a home role the destination should use
    renamed_because: str | None = None
    refused_because: str | None = None  # not copied at all (and reported)


def map_folders(
    folders: list[FolderInfo],
    dest: StoreFeatures,
    *,
    dest_root: tuple[str, ...] = (),
) -> list[FolderMapping]:
    """Map every selectable source folder to a destination path (pure)."""
    out: list[FolderMapping] = []
    taken: dict[tuple[str, ...], tuple[str, ...]] = {}  # normalised dest path -> source path
    claimed_roles: set[SpecialUse] = set()
    ordered = sorted(folders, key=lambda f: (guess_special_use(f) is None, len(f.path), f.path))
    for f in ordered:
        if not f.selectable:
            continue
        if _unsendable(f):
            out.append(FolderMapping(f, (), None, refused_because=UNSENDABLE))
            continue
        role = guess_special_use(f)
        reason = None
        if role in HOME_ROLES and role not in claimed_roles:
            claimed_roles.add(role)
            path: tuple[str, ...] = (DEFAULT_NAMES[role],)
            out.append(FolderMapping(f, path, role))
            taken[_norm(path, dest)] = f.path
            continue
        parts = []
        source_path = f.path
        if dest.inbox_prefix and len(source_path) > 1 and source_path[0].upper() == "INBOX":
            source_path = source_path[1:]  # INBOX.Sub lists as Sub there: use that name
        for name in source_path:
            clean, why = _clean_name(name, dest)
            parts.append(clean)
            reason = reason or why
        path = dest_root + tuple(parts)
        n = 2
        base = path
        while _norm(path, dest) in taken:
            path = (*base[:-1], f"{base[-1]} ({n})")
            reason = reason or "a folder of that name (ignoring case) already maps there"
            n += 1
        taken[_norm(path, dest)] = f.path
        out.append(FolderMapping(f, path, None, reason))
    return out


def placeholder_mappings(
    folders: list[FolderInfo],
    mappings: list[FolderMapping],
    dest_folders: list[FolderInfo],
    dest: StoreFeatures,
    *,
    dest_root: tuple[str, ...] = (),
) -> list[FolderMapping]:
    """Map the unselectable (``\\Noselect``) source folders that nothing else brings (pure).

    A source parent with folders below it arrives with them; one without any (a tree the
    user emptied) is mapped like an ordinary folder, unless the destination already lists
    it or a mapped folder's path already passes through it.
    """
    paths = [f.path for f in folders]
    through = {_norm(m.dest_path[:i], dest) for m in mappings
               for i in range(1, len(m.dest_path) + 1)}
    through |= {_norm(f.path, dest) for f in dest_folders}
    out = []
    for f in folders:
        if f.selectable or not f.path:
            continue
        if any(len(p) > len(f.path) and p[: len(f.path)] == f.path for p in paths):
            continue
        if _unsendable(f):
            out.append(FolderMapping(f, (), None, refused_because=UNSENDABLE))
            continue
        parts, reason = [], None
        for name in f.path:
            clean, why = _clean_name(name, dest)
            parts.append(clean)
            reason = reason or why
        path = dest_root + tuple(parts)
        if _norm(path, dest) in through:
            continue
        out.append(FolderMapping(f, path, None, reason))
    return out


UNSENDABLE = ("its name holds CR, LF or NUL, which no IMAP command can carry safely; "
              "rename it on the source to copy it")


def _unsendable(f: FolderInfo) -> bool:
    return any(has_line_break(name) for name in f.path)


def _norm(path: tuple[str, ...], dest: StoreFeatures) -> tuple[str, ...]:
    if path and path[0].upper() == "INBOX":
        path = ("INBOX", *path[1:])
    return tuple(p.lower() for p in path) if dest.case_insensitive_names else path


def visible(text: str) -> str:
    """``text`` with its control characters escaped (``\\r``, ``\\n``, ``\\x00``), for humans."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _clean_name(name: str, dest: StoreFeatures) -> tuple[str, str | None]:
    reason = None
    if name in (".", ".."):
        return f"_{name}", "'.' and '..' name directories on many servers, not folders"
    if dest.delimiter and dest.delimiter in name:
        name = name.replace(dest.delimiter, "_")
        reason = f"the destination uses {dest.delimiter!r} as its folder separator"
    if name.strip() != name or not name.strip():
        name = name.strip() or "_"
        reason = reason or "leading or trailing spaces are not allowed"
    if name.lower() in {r.lower() for r in dest.reserved_names}:
        name = f"{name} (migrated)"
        reason = reason or "the destination reserves this name"
    return name, reason
