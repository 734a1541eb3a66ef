"""What the lookup benchmark drives: gunicorn processes on loopback, wrk against them, a proxy that makes a
local endpoint as slow as a remote one, and a sampler of the SQLite files' size."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).with_name("wrk_paths.lua")
TICKS = os.sysconf("SC_CLK_TCK")

#: The servers this process started, by base URL: their process (gunicorn's master), whose CPU ``wrk`` reads.
SERVED: dict[str, int] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh install: no AWS configuration at all, no ECS_ID_MAPPER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_ID_MAPPER_"))}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    env.update(extra)
    return env


class Served:
    """A gunicorn server (``python -m MODULE``) on a free loopback port."""

    def __init__(self, module: str, env: Mapping[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "ECS_ID_MAPPER_BIND": f"127.0.0.1:{self.port}"}
        self.module, self.log = module, log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Served:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.url + "/health", timeout=2)
                SERVED[self.url] = self.process.pid
                return self
            except requests.RequestException:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.module} did not start; see {self.log}") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        SERVED.pop(self.url, None)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def cpu_seconds(pid: int) -> float:
    """The user and system CPU seconds process ``pid`` and its descendants (gunicorn's workers) have used so far,
    read from Linux's /proc; 0 where there is none."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime and stime, fields 14 and 15
            pending += map(int, Path(f"/proc/{current}/task/{current}/children").read_text().split())
    return total


def wrk(base_url: str, paths: list[str], seconds: float, connections: int) -> dict:
    """One wrk run (one thread, keep-alive connections) GETting random ``paths``; its figures, with the server's
    CPU per answer when it is one this process started (``Served``).

    The CPU figure is the steadier on a shared machine: neighbours take wall-clock time from both sides of a
    ratio unevenly, but what the server spends per answer changes much less.
    """
    pid = SERVED.get(base_url)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as listing:
        listing.write("\n".join(paths) + "\n")
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA), base_url,
             "--", listing.name],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(listing.name)
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    line = next(line for line in out.splitlines() if line.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "bad_status"))
    figures = {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
    }
    if pid and raw["requests"]:
        figures["cpu_us"] = cpu * 1e6 / raw["requests"]
    return figures


def alternate(targets: Mapping[str, tuple[str, list[str]]], rounds: int, seconds: float, connections: int) -> dict:
    """wrk against each ``name: (base URL, paths)`` in turn, ``rounds`` times: each target's runs."""
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, paths) in targets.items():
            runs[name].append(wrk(url, paths, seconds, connections))
    return runs


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def side_by_side(
    server: str, paths: list[str], bare: str, bare_paths: list[str], rounds: int, seconds: float, connections: int
) -> dict:
    """wrk against the bare route and the server in turn, ``rounds`` times; medians and the ratio per round."""
    runs = alternate({"bare": (bare, bare_paths), "server": (server, paths)}, rounds, seconds, connections)
    ours, theirs = runs["server"], runs["bare"]
    ratios = [o["rps"] / t["rps"] for o, t in zip(ours, theirs, strict=True)]
    figures = {
        "rps": round(median_of(ours, "rps")),
        "bare_rps": round(median_of(theirs, "rps")),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "p50_ms": median_of(ours, "p50_ms"),
        "p99_ms": median_of(ours, "p99_ms"),
        "bare_p50_ms": median_of(theirs, "p50_ms"),
        "bare_p99_ms": median_of(theirs, "p99_ms"),
        "errors": sum(o["errors"] for o in ours),
    }
    if all("cpu_us" in run for run in ours + theirs):
        # The bare route's server CPU per answer ÷ ours: what the ratio would be if CPU alone decided it.
        figures["cpu_us"] = round(median_of(ours, "cpu_us"), 1)
        figures["bare_cpu_us"] = round(median_of(theirs, "cpu_us"), 1)
        figures["cpu_ratio"] = round(
            statistics.median(t["cpu_us"] / o["cpu_us"] for o, t in zip(ours, theirs, strict=True)), 3
        )
    return figures


class FileSizes:
    """Samples the size of an SQLite database's WAL file in the background; the largest seen."""

    def __init__(self, database: Path, every: float = 0.1):
        self.wal = Path(f"{database}-wal")
        self.every = every
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            with suppress(FileNotFoundError):
                self.largest = max(self.largest, self.wal.stat().st_size)

    def __enter__(self) -> FileSizes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def files_size(database: Path) -> int:
    """Bytes of the database with its WAL and shared-memory files."""
    return sum(p.stat().st_size for p in (database, Path(f"{database}-wal"), Path(f"{database}-shm")) if p.exists())


class SlowProxy:
    """A TCP proxy on loopback that holds every request ``delay`` seconds before passing it on, as a remote
    endpoint's round trip would (a request is what one ``recv`` brings after the connection was quiet)."""

    def __init__(self, upstream_port: int, delay: float = 0.020):
        self.upstream_port, self.delay = upstream_port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, delayed: bool) -> None:
        quiet_since = time.monotonic()
        try:
            while data := source.recv(65536):
                if delayed and time.monotonic() - quiet_since > 0.002:
                    time.sleep(self.delay)
                sink.sendall(data)
                quiet_since = time.monotonic()
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
