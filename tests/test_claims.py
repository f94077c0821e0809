"""Per-run claims: one owner per run, stale claims taken over exactly once, two grids run each job once.

The claims are what keeps two grids (or two workers of a Ray / Slurm grid) on one
result folder from training the same run twice; the last test starts two real grid
processes together on one folder and counts how often each run trained.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from genseg_bench.claims import Claim, ClaimInfo, claim_path, is_stale, read_claim

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(path: Path, **fields: object) -> None:
    info = {"owner": "someone", "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    info["heartbeat"] = time.time()
    info.update(fields)
    path.write_text(json.dumps(info))


def test_one_owner_at_a_time_and_release_frees_the_run(tmp_path: Path) -> None:
    path = claim_path(tmp_path / "t" / "run.json")
    assert path.name == "run.claim"  # not *.json: result readers never see it
    first, second = Claim(path), Claim(path)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder is not None and second.holder.pid == os.getpid()
    info = ClaimInfo.parse(path.read_text())
    assert info is not None and info.owner == first.owner and info.host == socket.gethostname()
    first.release()
    assert not path.exists()
    assert second.acquire()
    second.release()


def test_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "run.claim"
    _write(path, pid=_dead_pid())
    claim = Claim(path)
    assert claim.acquire()
    assert ClaimInfo.parse(path.read_text()).owner == claim.owner  # type: ignore[union-attr]
    claim.release()


def test_claim_of_a_live_process_is_kept_and_old_heartbeats_are_stale(tmp_path: Path) -> None:
    path = tmp_path / "run.claim"
    _write(path, host="other-node", pid=1, heartbeat=time.time() - 5)
    assert not Claim(path, timeout_s=60).acquire()  # another host's pid cannot be checked: heartbeat decides
    _write(path, host="other-node", pid=1, heartbeat=time.time() - 120)
    os.utime(path, (time.time() - 120, time.time() - 120))
    taker = Claim(path, timeout_s=60)
    assert taker.acquire()
    taker.release()
    # a claim created but never written (its creator died in between) is judged by its age
    path.write_text("")
    assert not is_stale(*read_claim(path), timeout_s=60)  # type: ignore[misc]
    assert is_stale(*read_claim(path), timeout_s=60, now=time.time() + 61)  # type: ignore[misc]


def test_heartbeat_refreshes_the_claim_while_the_run_trains(tmp_path: Path) -> None:
    path = tmp_path / "run.claim"
    claim = Claim(path, heartbeat_s=0.05)
    assert claim.acquire()
    first = ClaimInfo.parse(path.read_text()).heartbeat  # type: ignore[union-attr]
    with claim:
        time.sleep(0.5)
        later = ClaimInfo.parse(path.read_text()).heartbeat  # type: ignore[union-attr]
        assert later > first
    assert not path.exists()


def test_many_takers_of_one_stale_claim_leave_exactly_one_owner(tmp_path: Path) -> None:
    for round_ in range(5):
        path = tmp_path / f"run{round_}.claim"
        _write(path, pid=_dead_pid())
        barrier = threading.Barrier(8)
        won: list[Claim] = []

        def take(path: Path = path, barrier: threading.Barrier = barrier, won: list[Claim] = won) -> None:
            claim = Claim(path)
            barrier.wait()
            if claim.acquire():
                won.append(claim)

        threads = [threading.Thread(target=take) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(won) == 1, f"round {round_}: {len(won)} owners"
        assert ClaimInfo.parse(path.read_text()).owner == won[0].owner  # type: ignore[union-attr]


GRID = """
import sys, time
from pathlib import Path
import genseg_bench.runner as runner
from genseg_bench.catalog import Catalog
from genseg_bench.data.store import Store
from genseg_bench.profiles import get_profile

results, store, log, me, other = (Path(a) for a in sys.argv[1:6])
real_run_job = runner.run_job

def counted(spec, *args, **kwargs):
    with open(log, "a") as fh:  # one line per run that trained, O_APPEND: lines never interleave
        fh.write(f"{spec.run_id} {me.name}\\n")
    return real_run_job(spec, *args, **kwargs)

runner.run_job = counted
me.touch()
while not other.exists():  # start together: both grids plan the same six unfinished runs
    time.sleep(0.01)
s = runner.run_grid(Catalog.load(), "synthetic-ood", ["unet", "deeplab"], [8], [0, 1, 2],
                    get_profile("smoke"), Store(store), results, "cpu", threads=1)
print(len(s.ran), len(s.elsewhere), len(s.skipped))
"""


def test_two_grids_started_together_run_every_job_exactly_once(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    from genseg_bench.catalog import Catalog
    from genseg_bench.profiles import get_profile
    from genseg_bench.results import read_result, result_files
    from genseg_bench.runner import load_task_data, run_image_size

    task = Catalog.load().task("synthetic-ood")
    load_task_data(task, store, run_image_size(task, get_profile("smoke")))  # data and split made once, first
    results, log = tmp_path / "results", tmp_path / "ran.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                GRID,
                str(results),
                str(store.root),
                str(log),
                str(tmp_path / me),
                str(tmp_path / other),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outs = [p.communicate(timeout=1200) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert len(runs) == 6 and set(runs.values()) == {1}, runs  # every job run, each exactly once
    ran = [tuple(map(int, o[0].split())) for o in outs]
    assert sum(r[0] for r in ran) == 6 and sum(r[0] + r[1] + r[2] for r in ran) == 12, ran
    files = result_files(results, "synthetic-ood")
    assert sorted(f.stem for f in files) == sorted(runs)
    assert all(read_result(f).status == "ok" for f in files)  # every file whole and readable
    leftovers = [p.name for p in (results / "synthetic-ood").iterdir() if p.suffix != ".json" and p.is_file()]
    assert leftovers == [], leftovers  # no claim, takeover guard or temporary file left


@pytest.mark.parametrize("bad", ["", "{", '{"owner": 1}'])
def test_unparsable_claims_never_crash(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "run.claim"
    path.write_text(bad)
    seen = read_claim(path)
    assert seen is not None and seen[0] is None  # judged by its age, as a claim still being written
