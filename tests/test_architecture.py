"""The layout shows the architecture: no import loops between subpackages, and the sync
layer reaches stores only through their shared protocol (``stores.base``)."""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "mailtrek"

# What sync/ may import from stores/: the protocol every store speaks, nothing else.
SYNC_MAY_IMPORT = ("mailtrek.stores.base",)


def _node(rel: Path) -> str:
    """Subpackage name for a file inside one, else the top-level module's name."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@functools.cache
def _imports(path: Path) -> set[str]:
    rel = path.relative_to(SRC)
    package = ["mailtrek", *rel.parts[:-1]]
    out: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = package[: len(package) - n.level + 1] if n.level else []
            mod = ".".join([*base, n.module] if n.module else base)
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in n.names}
    return {m for m in out if m.startswith("mailtrek.")}


def _target(module: str) -> str | None:
    first = module.split(".")[1]
    if (SRC / first).is_dir():
        return first
    return first if (SRC / f"{first}.py").is_file() else None


def _graph() -> dict[str, dict[str, set[str]]]:
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC)
        if rel.name == "__main__.py" or "migrations" in rel.parts:
            continue
        for m in _imports(f):
            t = _target(m)
            if t and t != _node(rel):
                edges[_node(rel)][t].add(str(rel))
    return edges


def _cycles(edges: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    nodes = set(edges) | {t for ts in edges.values() for t in ts}
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_loop_between_subpackages() -> None:
    edges = _graph()
    loops = _cycles(edges)
    detail = [{a: {b: sorted(edges[a][b])[:3] for b in loop if b in edges[a]} for a in loop}
              for loop in loops]
    assert loops == [], detail


def test_cycle_finder_finds_a_loop() -> None:
    """The checker itself: a planted loop a -> b -> c -> a is reported."""
    edges: dict[str, dict[str, set[str]]] = {"a": {"b": {"x"}}, "b": {"c": {"y"}},
                                             "c": {"a": {"z"}}, "d": {"a": {"w"}}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_sync_reaches_stores_only_through_their_protocol() -> None:
    """sync/ imports no store backend: what differs by store is a declared feature
    (``StoreFeatures``) or a store method (``canonical_bytes``)."""
    found = set()
    for f in (SRC / "sync").rglob("*.py"):
        for m in _imports(f):
            if m.startswith("mailtrek.stores") and not m.startswith(SYNC_MAY_IMPORT):
                found.add((str(f.relative_to(SRC)), m))
    assert found == set()


def _kind_tests(source: str, name: str) -> list[str]:
    """Where ``source`` compares a store's kind (``dest.features.kind == "imap"``)."""
    out = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Compare) and any(
                isinstance(x, ast.Attribute) and x.attr == "kind"
                and isinstance(x.value, ast.Attribute) and x.value.attr == "features"
                for x in (n.left, *n.comparators)):
            out.append(f"{name}:{n.lineno}")
    return out


def test_sync_never_branches_on_a_store_kind() -> None:
    found = [hit for f in sorted((SRC / "sync").rglob("*.py"))
             for hit in _kind_tests(f.read_text(encoding="utf-8"), str(f.relative_to(SRC)))]
    assert found == []


def test_kind_checker_finds_a_kind_test() -> None:
    """The checker itself: a planted kind test is found, a feature test is not."""
    planted = ('def f(dest):\n    if dest.features.lists_named_uids:\n        return 1\n'
               '    return "graph" != dest.features.kind\n')
    assert _kind_tests(planted, "x.py") == ["x.py:4"]


# -- the front ends are leaves ------------------------------------------------------------
# Who may import the front ends: the CLI starts the web app (`mailtrek serve`, `admin
# set-password`); nothing else imports either (the application layer is mailtrek.service).
FRONT_END_IMPORTERS = {"cli": set(), "web": {"cli/web_cmds.py"}}


def test_cli_and_web_are_imported_by_nobody_below_them() -> None:
    graph = _graph()
    found = {front: {f for targets in graph.values() for f in targets.get(front, set())}
             for front in FRONT_END_IMPORTERS}
    assert found == FRONT_END_IMPORTERS


def _module_graph(package: str) -> dict[str, dict[str, set[str]]]:
    """Imports between the modules of one subpackage, at any depth (function-level ones too)."""
    edges: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in (SRC / package).rglob("*.py"):
        me = ".".join(["mailtrek", *f.relative_to(SRC).with_suffix("").parts])
        for m in _imports(f):
            if not m.startswith(f"mailtrek.{package}."):
                continue
            mod = m if (SRC.parent / (m.replace(".", "/") + ".py")).is_file() else m.rsplit(".", 1)[0]
            if mod != me and (SRC.parent / (mod.replace(".", "/") + ".py")).is_file():
                edges[me][mod].add(m)
    return edges


def test_no_import_loop_between_command_modules() -> None:
    """Command modules share cli/common.py and cli/groups.py instead of each other's helpers."""
    for package in ("cli", "service"):
        edges = _module_graph(package)
        assert _cycles(edges) == [], package
    cli = _module_graph("cli")
    assert {s for s, ts in cli.items() if "mailtrek.cli.orchestrate_cmds" in ts} == {"mailtrek.cli.main"}


def test_module_loop_finder_sees_function_level_imports() -> None:
    """The checker itself: cli/main.py's imports inside functions count as edges."""
    assert "mailtrek.cli.common" in _module_graph("cli")["mailtrek.cli.main"]


def test_service_layer_knows_no_front_end() -> None:
    """mailtrek.service neither prints (typer) nor speaks HTTP (fastapi, starlette)."""
    found = set()
    for f in (SRC / "service").rglob("*.py"):
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = ([a.name for a in n.names] if isinstance(n, ast.Import)
                     else [n.module or ""] if isinstance(n, ast.ImportFrom) else [])
            found |= {(f.name, m) for m in names if m.split(".")[0] in ("typer", "click", "fastapi", "starlette")}
    assert found == set()
