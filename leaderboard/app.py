"""Entry point of the leaderboard Space (and of ``python -m genseg_bench.leaderboard_app.app``).

The Space runs this file with the results dataset named by ``--repo`` or the
``RESULTS_REPO`` Space variable (``--results-dir`` / ``--parquet`` serve a local
folder instead). It listens on 0.0.0.0:7860, the port the Space card declares.
Configuration comes from the command line first; the environment variables are
only the Space's way of passing it, read here and nowhere else.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from genseg_bench.leaderboard_app.data import DataSource
    from genseg_bench.leaderboard_app.server import make_server, serve_until_interrupted

    parser = argparse.ArgumentParser(description="genseg-bench leaderboard server")
    parser.add_argument(
        "--repo", default=os.environ.get("RESULTS_REPO"), help="Hub results dataset, ORG/NAME"
    )
    parser.add_argument("--results-dir", type=Path, default=None, help="a local result folder")
    parser.add_argument("--parquet", type=Path, default=None, help="a local export folder or parquet file")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7860")))
    parser.add_argument("--refresh", type=float, default=float(os.environ.get("REFRESH_S", "600")))
    args = parser.parse_args(argv)
    repo = None if (args.results_dir or args.parquet) else args.repo
    if not (repo or args.results_dir or args.parquet):
        parser.error("give --repo ORG/NAME (or set the RESULTS_REPO variable), --results-dir or --parquet")
    server = make_server(DataSource(args.results_dir, args.parquet, repo, args.refresh), args.host, args.port)
    print(f"genseg-bench leaderboard on http://{args.host}:{server.server_address[1]}/", flush=True)
    serve_until_interrupted(server)


if __name__ == "__main__":
    main()
