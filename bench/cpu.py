"""CPU time per container upsert, stage by stage, and per lookup against the bare route, measured in one process
without HTTP (``.venv/bin/python -m bench.cpu``).

On a machine shared with other work, wall-clock rates say more about the neighbours than about the code; the
CPU a process spends (``time.process_time``, best of several rounds) says what a change saved. The lookups are
WSGI calls into the app and into ``bench/bare.py``: gunicorn's own cost per request, the same for both, is left
out, so these ratios are lower than the ones ``bench.lookup`` measures through wrk.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench import bare, fleet
from server import records, schema
from server.store.sqlite import SQLiteStore, encode_record


def best_of(rounds: int, work: Callable[[], Any]) -> float:
    """The least CPU seconds ``work`` took in ``rounds`` runs."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def ingest_stages(count: int, rounds: int, workdir: Path) -> dict[str, float]:
    """Microseconds of CPU per container for each stage a ``/report/map`` body goes through."""
    bodies = [fleet.report(first) for first in range(0, count, fleet.REPORT_SIZE)]
    parsed = [json.loads(body) for body in bodies]
    checked = [schema.map_report(body)[0] for body in parsed]
    now = records.utc_now()
    merged = [records.merge(None, entry, now) for entries in checked for entry in entries]
    stages = {
        "json": best_of(rounds, lambda: [json.loads(body) for body in bodies]),
        "schema": best_of(rounds, lambda: [schema.map_report(body) for body in parsed]),
        "merge": best_of(rounds, lambda: [records.merge(None, entry, now) for e in checked for entry in e]),
        "encode": best_of(rounds, lambda: [encode_record(record) for record in merged]),
    }
    stores = iter(range(rounds))

    def store_all() -> None:  # a fresh file each round: every container is new, as in bench.lookup's case 5
        store = SQLiteStore(str(workdir / f"stages-{next(stores)}.sqlite3"))
        for entries in checked:
            store.record_report(entries, [], now)
        store.close()

    stages["store (merge, encode, SQLite)"] = best_of(rounds, store_all)
    return {name: round(seconds * 1e6 / count, 1) for name, seconds in stages.items()}


def _environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }


def _call_all(app: Any, paths: Iterable[str]) -> None:
    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{status} from the app")

    for path in paths:
        for _ in app(_environ(path), start_response):
            pass


def lookups(count: int, rounds: int, workdir: Path) -> dict[str, dict[str, float]]:
    """Microseconds of CPU per request, and the bare route's figure divided by each."""
    from server.app import create_app
    from server.state import state

    app = create_app({"store": f"sqlite:///{workdir / 'lookups.sqlite3'}", "token": "bench"})
    for handler in logging.getLogger().handlers:  # the request log is written, as the server's is, to nowhere
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - open while the app is
    client = app.test_client()
    for first in range(0, count, fleet.REPORT_SIZE):
        client.post("/report/map", data=fleet.report(first), headers={"Authorization": "Bearer bench"})
    ids = [fleet.container_id(n) for n in range(count)]
    tasks = sorted({fleet.task_id(n) for n in range(count)})
    paths = {
        "bare": (bare.create_app(), [f"/bare/{i}" for i in ids]),
        "container text": (app, [f"/query/container_id/{i}" for i in ids]),
        "task text": (app, [f"/query/task_id/{t}" for t in tasks]),
        "container _all": (app, [f"/query/container_id/{i}/_all" for i in ids]),
    }
    for target, listed in paths.values():
        _call_all(target, listed)  # warm: the per-worker caches fill as they would under wrk
    costs = {
        name: best_of(rounds, lambda t=target, p=listed: _call_all(t, p)) * 1e6 / len(listed)  # type: ignore[misc]
        for name, (target, listed) in paths.items()
    }
    state(app).close()
    return {name: {"us": round(us, 1), "bare_ratio": round(costs["bare"] / us, 2)} for name, us in costs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ecs-id-mapper-cpu-") as tmp:
        # Metrics as the server keeps them: one file per worker in a shared directory.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tmp)
        figures = {
            "ingest_us_per_container": ingest_stages(args.containers, args.rounds, Path(tmp)),
            "lookup_us_per_request": lookups(min(args.containers, 2000), args.rounds, Path(tmp)),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
        }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
