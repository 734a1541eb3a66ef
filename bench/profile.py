"""Where a lookup's time goes inside live gunicorn workers: py-spy samples the real server's workers, and the bare
route's, while wrk asks them, and each sample is put in the part of an answer its stack is in.

``.venv/bin/python -m bench.profile`` (in ``make bench``) needs wrk and py-spy, and ptrace allowed (in a container,
the ``SYS_PTRACE`` capability). It loads 100,000 containers through the store's code, then profiles container text
at random and the bare route in turn, ``--rounds`` times each. A part's figure is its Python time per answer:
samples taken while a thread held the GIL, times the sampling interval, over the answers wrk got meanwhile. py-spy
samples wall-clock time, so a thread the kernel sets aside while it holds the GIL counts too.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import fleet
from bench.load import Served, clean_env, wrk, wrk_available
from bench.lookup import bulk_load, warm_up

#: Parts of an answer and the frames that put a sample in each; the first part that matches takes the sample.
PARTS = [
    ("the request log line", ("Logger.handle", "Logger.makeRecord", "BufferedLines.")),
    ("the request metrics", ("count_request",)),
    ("the route", ("Flask.dispatch_request",)),
    ("Flask around the route", ("Flask.wsgi_app",)),
    ("the middleware itself", ("RequestLog.__call__",)),
    ("gunicorn and the rest", ("",)),
]
RATE = 250  # samples per second


def part_of(stack: str) -> str:
    functions = [frame.split(" (", 1)[0] for frame in stack.split(";")]
    for part, names in PARTS:
        if any(function.startswith(name) for function in functions for name in names):
            return part
    raise AssertionError("the last part matches every stack")


def profile(served: Served, paths: list[str], seconds: float, out: Path) -> dict[str, float]:
    """µs of Python time per answer, by part, over one wrk run of ``seconds``."""
    assert served.process is not None
    spy = subprocess.Popen(
        [py_spy(), "record", "--pid", str(served.process.pid), "--subprocesses", "--gil", "--nonblocking",
         "--rate", str(RATE), "--duration", f"{seconds:g}", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run = wrk(served.url, paths, seconds, 16)
    _, errors = spy.communicate()
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed (is ptrace allowed?): {errors.strip()[-500:]}")
    if run["errors"]:
        raise RuntimeError(f"{run['errors']} answers were errors, not lookups")
    answers = run["rps"] * seconds
    samples: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():  # py-spy may leave its last line cut short when it stops
            samples[part_of(stack)] += int(count)
    per_answer = {part: samples[part] * 1e6 / RATE / answers for part, _ in PARTS}
    return {**per_answer, "total": sum(per_answer.values())}


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not wrk_available() or not Path(py_spy()).exists():
        print("bench.profile needs wrk and py-spy (make bench installs both)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ecs-id-mapper-profile-"))
    try:
        database = workdir / "fleet.sqlite3"
        bulk_load(database, args.containers)
        env = clean_env(ECS_ID_MAPPER_STORE=f"sqlite:///{database}", ECS_ID_MAPPER_TOKEN="profile")
        targets = {
            "ours": ("server", [f"/query/container_id/{fleet.container_id(random.randrange(args.containers))}"
                                for _ in range(100_000)]),
            "bare": ("bench.bare", [f"/bare/{i}" for i in range(1000)]),
        }  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for round_ in range(args.rounds):
            for name, (module, paths) in targets.items():
                with Served(module, env, workdir / f"{name}.log") as served:
                    warm_up(served.url, paths, 16)
                    runs[name].append(profile(served, paths, args.seconds, workdir / f"{name}-{round_}.txt"))
    except RuntimeError as exc:
        print(f"bench.profile: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    parts = [*(part for part, _ in PARTS), "total"]
    figures = {
        name: {part: round(statistics.median(run[part] for run in rounds), 1) for part in parts}
        for name, rounds in runs.items()
    }
    print("| Part (µs of Python time per answer, median of rounds) | container text | bare route |")
    print("|---|---:|---:|")
    for part in parts:
        print(f"| {part} | {figures['ours'][part]:,.0f} | {figures['bare'][part]:,.0f} |")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
