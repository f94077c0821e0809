"""Entry point of the leaderboard Space (``python app.py``) and of ``python -m genseg_bench.leaderboard_app.app``.

The Space runs this file as a script with the results dataset named by
``--repo`` or the ``RESULTS_REPO`` Space variable (``--parquet`` /
``--results-dir`` serve a local export or result folder instead). Configuration
comes from the command line first; the environment variables are only the
Space's way of passing it (``RESULTS_REPO``, ``REFRESH_S``, and gradio's own
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``), read here and nowhere else.

Run as a script, this folder is loaded as the package
``genseg_bench.leaderboard_app``, exactly the name it has in an installed
genseg-bench, and ``genseg_bench`` itself is the copy next to this file (see
``vendor.py``): the same code runs on the Space, from a checkout and from a wheel.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType


def _as_package() -> ModuleType:
    """This folder as ``genseg_bench.leaderboard_app`` (already so when imported from an installed genseg-bench)."""
    if __package__:
        return importlib.import_module(__package__)
    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import genseg_bench  # the copy in this folder, found first on sys.path

    name = "genseg_bench.leaderboard_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, here / "__init__.py", submodule_search_locations=[str(here)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    genseg_bench.leaderboard_app = module  # type: ignore[attr-defined]
    return module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="genseg-bench leaderboard (Gradio)")
    parser.add_argument(
        "--repo", default=os.environ.get("RESULTS_REPO"), help="Hub results dataset, ORG/NAME"
    )
    parser.add_argument("--results-dir", type=Path, default=None, help="a local result folder")
    parser.add_argument("--parquet", type=Path, default=None, help="a local export folder or parquet file")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument(
        "--refresh",
        type=float,
        default=float(os.environ.get("REFRESH_S", "600")),
        help="re-read the source at most every N seconds (default 600)",
    )
    args = parser.parse_args(argv)
    if args.results_dir or args.parquet:
        args.repo = None
    if not (args.repo or args.results_dir or args.parquet):
        parser.error("give --repo ORG/NAME (or set the RESULTS_REPO variable), --results-dir or --parquet")
    if sum(x is not None for x in (args.results_dir, args.parquet)) > 1:
        parser.error("give one of --results-dir and --parquet")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's own requests, one line each
    pkg = _as_package()
    data = importlib.import_module(f"{pkg.__name__}.data")
    ui = importlib.import_module(f"{pkg.__name__}.ui")
    source = data.DataSource(args.results_dir, args.parquet, args.repo, args.refresh)
    snap = source.get()
    print(f"genseg-bench leaderboard: {len(snap.results)} runs from {snap.description}", flush=True)
    ui.launch(source, args.host, args.port)


if __name__ == "__main__":
    main()
