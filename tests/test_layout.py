"""The rooms depend one way (docs/architecture.md, "Rooms"): computed from every module's `import` statements
(`ast`, function-level imports included), checked against the table below, which is itself a one-way order.

    walltrack (the wiring) → operations → gateway, storage → execution, intelligence → adapters;
    gateway, ui, storage, execution → actors; actors import no runtime and no adapter.

The composition root's plumbing is its own node: `walltrack.runtime` (bridge, logs: what every runtime-side room
runs on) and `walltrack.config` (settings, the config objects built from them, secrets: read by operations).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOMS = ("actors", "adapters", "gateway", "ui", "sandbox", "intelligence", "execution", "storage", "operations",
         "walltrack", "bench")
PLUMBING = {"walltrack.bridge": "walltrack.runtime", "walltrack.logs": "walltrack.runtime",
            "walltrack.settings": "walltrack.config", "walltrack.settings_trading": "walltrack.config",
            "walltrack.config": "walltrack.config", "walltrack.secrets": "walltrack.config"}
EVERYTHING = frozenset(ROOMS) | frozenset(PLUMBING.values())
ALLOWED: dict[str, frozenset[str]] = {  # what each node may import besides itself
    "actors": frozenset(),
    "adapters": frozenset(),
    "sandbox": frozenset(),
    "gateway": frozenset({"actors"}),
    "ui": frozenset({"actors"}),
    "intelligence": frozenset({"adapters"}),
    "walltrack.runtime": frozenset({"actors"}),
    "execution": frozenset({"actors", "adapters", "walltrack.runtime"}),
    "storage": frozenset({"actors", "walltrack.runtime"}),
    "walltrack.config": frozenset({"actors", "adapters", "execution", "intelligence"}),
    "operations": frozenset({"actors", "adapters", "gateway", "storage", "walltrack.runtime", "walltrack.config"}),
    "walltrack": EVERYTHING - {"walltrack", "bench"},
    "bench": EVERYTHING - {"bench"},
}
# The actors are pure: no runtime (ours or a library's I/O) and no adapter; only pykka runs them.
ACTORS_NEVER = frozenset({"trio", "asyncpg", "httpx", "hypercorn", "quart", "quart_trio", "nicegui", "nats", "sniffio"})


def node(module: str) -> str:
    return PLUMBING.get(module, module.split(".")[0])


def imports(root: Path = REPO) -> dict[str, set[str]]:
    """module -> every module it imports (ours and libraries', top-level name for libraries)."""
    modules = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
               for room in ROOMS for p in (root / room).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        out = graph.setdefault(name, set())
        for n in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(n, ast.Import):
                out.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                # `from pkg import module` names the module itself
                out.update(f"{n.module}.{a.name}" if f"{n.module}.{a.name}" in modules else n.module for a in n.names)
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import against the table: `importer -> imported (room -> room)`."""
    out = []
    for importer, targets in sorted(graph.items()):
        src = node(importer)
        for target in sorted(targets):
            if src == "actors" and target.split(".")[0] in ACTORS_NEVER:
                out.append(f"{importer} -> {target} (actors import no runtime)")
            elif target.split(".")[0] in ROOMS and (dst := node(target)) != src and dst not in ALLOWED[src]:
                out.append(f"{importer} -> {target} ({src} may not import {dst})")
    return out


def test_the_rules_point_one_way() -> None:
    order = list(TopologicalSorter({k: set(v) for k, v in ALLOWED.items()}).static_order())
    assert order.index("actors") < order.index("gateway") < order.index("operations") < order.index("walltrack")
    assert "actors" not in ALLOWED["adapters"] and "walltrack" not in ALLOWED["operations"]


def test_every_import_follows_the_rooms() -> None:
    graph = imports()
    assert {"walltrack.app", "adapters.http", "storage.store", "actors.messages", "gateway.app"} <= graph.keys()
    assert violations(graph) == []
    rooms = {node(m): {node(t) for t in ts if t.split(".")[0] in ROOMS} - {node(m)} for m, ts in graph.items()}
    merged: dict[str, set[str]] = {}
    for src, dsts in rooms.items():
        merged.setdefault(src, set()).update(dsts)
    try:
        list(TopologicalSorter(merged).static_order())
    except CycleError as exc:
        pytest.fail(f"rooms import each other in a cycle: {exc.args[1]}")


@pytest.mark.parametrize(("importer", "target"), [
    ("adapters.jupiter", "actors.messages"),  # an adapter importing the actors
    ("actors.wallet", "trio"),  # an actor on a runtime
    ("actors.position", "adapters.http"),  # an actor calling out itself
    ("actors.wallet", "walltrack.bridge"),  # an actor on our runtime bridge
    ("storage.store", "walltrack.app"),  # a room importing the wiring
    ("gateway.app", "ui.backend"),  # the gateway reaching into the panel
    ("intelligence.safety", "storage.repo"),  # a decision reading the database itself
    ("execution.live", "walltrack.settings"),  # execution reading settings instead of its config
])
def test_a_wrong_import_is_caught(importer: str, target: str) -> None:
    found = violations({importer: {target}})
    assert len(found) == 1 and found[0].startswith(f"{importer} -> {target} (")


def test_a_right_import_passes() -> None:
    assert violations({"gateway.app": {"actors.trades"}, "walltrack.app": {"storage.repo", "ui.backend"},
                       "operations.metrics": {"walltrack.config", "walltrack.bridge"}, "actors.wallet": {"pykka"}}) == []


def test_a_wrong_import_in_a_file_is_caught(tmp_path: Path) -> None:
    """The same through the parser: a function-level import in a synthetic tree."""
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "x.py").write_text("def f():\n    from actors.messages import Fill\n    return Fill\n")
    (tmp_path / "actors").mkdir()
    (tmp_path / "actors" / "messages.py").write_text("import trio\n")
    found = violations(imports(tmp_path))
    assert found == ["actors.messages -> trio (actors import no runtime)",
                     "adapters.x -> actors.messages (adapters may not import actors)"]


def test_each_room_says_what_it_owns_and_may_import() -> None:
    for room in ("adapters", "intelligence", "execution", "storage", "operations", "gateway", "walltrack"):
        doc = ast.get_docstring(ast.parse((REPO / room / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{room}/__init__.py: say what the room owns and may import"
