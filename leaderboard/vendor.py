"""Copy the part of genseg_bench that the Space needs into ``leaderboard/genseg_bench/``.

Why a copy: the Space must build from its own folder with ``pip install -r
requirements.txt`` alone, genseg-bench is not on a package index, and its full
install pulls torch, which a leaderboard never needs. The board must still show
exactly the numbers of ``genseg-bench report``, so it runs the library's own
functions (``report.aggregate``, ``curves``, ``export``), copied byte for byte.
On the Space, ``app.py`` runs as a script, its folder comes first on
``sys.path`` and ``import genseg_bench`` finds the copy; in a checkout or an
installed wheel the copy is not on the path and the real package is used.

Which modules: every ``genseg_bench`` module that a file of the Space imports
(at any level), then what those import at module level, transitively. An
import inside a function of a copied module is a path the Space does not take
(the writers of ``export``: the ``datasets`` schema and the dataset card), and
an import guarded by ``except ImportError`` in a Space file is optional (the
installed catalog, a fallback for tasks an export lacks).

Run ``python leaderboard/vendor.py`` after editing one of the copied modules;
``--check`` only reports, and the tests fail while a copy is stale.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path

SPACE = Path(__file__).resolve().parent
REPO = SPACE.parent
PACKAGE = "genseg_bench"
VENDOR = SPACE / PACKAGE


def _guarded(node: ast.Try) -> bool:
    """A try block whose handlers catch ImportError: its imports are optional."""
    for h in node.handlers:
        names = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
            return True
    return False


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _modules(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """Absolute module names of one import statement (``package``: the importing module's package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        base = node.module or ""
    else:
        parts = package.split(".")
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, node.module] if node.module else parts)
    # `from pkg import mod` may name a submodule: both are returned, callers keep what exists
    return [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]


def imports(path: Path, package: str = "", module_level_only: bool = False) -> set[str]:
    """Modules a Python file imports: at any level, or at module level only; never TYPE_CHECKING or guarded ones.

    ``package`` resolves relative imports (``from .board import x`` in package
    ``genseg_bench.leaderboard_app`` is ``genseg_bench.leaderboard_app.board``).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(nodes: list[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.update(_modules(node, package))
            elif isinstance(node, ast.If) and _is_type_checking(node):
                continue
            elif isinstance(node, ast.Try) and _guarded(node):
                visit([*node.orelse, *node.finalbody])
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not module_level_only:
                    visit(list(node.body))
            else:  # class bodies, if/with/for/try blocks and except handlers run at import time
                for name in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, name, []) if isinstance(n, ast.AST)])

    visit(list(tree.body))
    return found


def space_files(space: Path = SPACE) -> list[Path]:
    """The Space's own Python files (the copy excluded)."""
    return sorted(p for p in space.glob("*.py"))


def _source(module: str, repo: Path) -> Path | None:
    """The file of a genseg_bench module in the checkout, or None when no such module exists."""
    rel = Path(*module.split("."))
    for cand in (repo / rel.with_suffix(".py"), repo / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def closure(repo: Path = REPO, space: Path = SPACE) -> list[str]:
    """The genseg_bench modules to copy (sorted), parent packages included."""
    todo = [
        m
        for f in space_files(space)
        for m in imports(f, f"{PACKAGE}.leaderboard_app")
        if (m == PACKAGE or m.startswith(PACKAGE + ".")) and not m.startswith(f"{PACKAGE}.leaderboard_app")
    ]
    done: set[str] = set()
    while todo:
        m = todo.pop()
        if m in done or _source(m, repo) is None:
            continue
        done.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages
        src = _source(m, repo)
        assert src is not None
        pkg = m if src.name == "__init__.py" else ".".join(parts[:-1])
        todo += [
            d
            for d in imports(src, pkg, module_level_only=True)
            if d == PACKAGE or d.startswith(PACKAGE + ".")
        ]
    return sorted(done)


def planned(repo: Path = REPO, space: Path = SPACE) -> dict[Path, Path]:
    """Each file of the copy (relative to the Space folder) and its source in the checkout."""
    out: dict[Path, Path] = {}
    for m in closure(repo, space):
        src = _source(m, repo)
        assert src is not None
        out[src.relative_to(repo)] = src
    return out


def problems(repo: Path = REPO, space: Path = SPACE) -> list[str]:
    """Why the copy is not current (empty when it is)."""
    plan = planned(repo, space)
    out = []
    for rel, src in plan.items():
        dst = space / rel
        if not dst.is_file():
            out.append(f"{dst} is missing")
        elif dst.read_bytes() != src.read_bytes():
            out.append(f"{dst} differs from {src}")
    vendor = space / PACKAGE
    extra = sorted(p.relative_to(space) for p in vendor.rglob("*.py")) if vendor.is_dir() else []
    out += [f"{space / p} is no longer needed" for p in extra if p not in plan]
    return out


def sync(repo: Path = REPO, space: Path = SPACE) -> list[Path]:
    """Rewrite the copy from the checkout; returns the files written, relative to the Space folder."""
    plan = planned(repo, space)
    vendor = space / PACKAGE
    if vendor.is_dir():
        shutil.rmtree(vendor)
    for rel, src in plan.items():
        (space / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, space / rel)
    return sorted(plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="report a stale copy, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for p in found:
            print(p)
        if found:
            print("run `python leaderboard/vendor.py` to update the copy", file=sys.stderr)
        return 1 if found else 0
    for rel in sync():
        print(f"copied {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
