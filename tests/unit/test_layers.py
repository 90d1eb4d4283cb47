"""The packages import downward only (README, Architecture), and the pure folds import no I/O.

Read off the source with `ast`, every import (also those inside functions) counts."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each package with its floor: a package imports its own floor's modules only from itself,
# and any package of a lower floor.
FLOORS = {
    "schemas": 1,
    "projections": 2,
    "streams": 3,
    "replay": 4,
    "explorer": 4,
    "cli": 5,
    "bench": 5,
}

# The modules of schemas/ and projections/ that talk to a service: the store and the reader.
# Every other module there is pure (the folds, the key schema, the views).
IO_MODULES = {"projections/store.py", "projections/reader.py"}
IO_LIBRARIES = {
    "aiokafka",
    "asyncio",
    "faust",
    "fastapi",
    "httpx",
    "redis",
    "requests",
    "socket",
    "subprocess",
    "uvicorn",
}


def imports(path: Path) -> set[str]:
    """The top-level names of every module `path` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_package_is_on_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= set(FLOORS) | {"tests"}, packages - set(FLOORS)


def test_no_package_imports_one_above_or_beside_it() -> None:
    wrong = []
    for package, floor in FLOORS.items():
        for path in sources(package):
            for name in imports(path) & set(FLOORS):
                if name != package and FLOORS[name] >= floor:
                    wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_pure_folds_import_no_io() -> None:
    wrong = []
    for package in ("schemas", "projections"):
        for path in sources(package):
            name = str(path.relative_to(ROOT))
            if name not in IO_MODULES and (found := imports(path) & IO_LIBRARIES):
                wrong.append(f"{name} imports {', '.join(sorted(found))}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_import_that_runs_back_up(tmp_path: Path) -> None:
    """The walk finds an import inside a function too (the CLI used to import that way)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from cli.main import main\n    import redis.asyncio\n")
    assert imports(module) == {"cli", "redis"}
