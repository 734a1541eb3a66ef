"""``python -m server``: validate the configuration, then serve the app under gunicorn."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from server import config as config_module
from server import logs
from server.store import StoreError, open_store
from server.token_file import TokenFile, TokenFileError
from server.token_file import read as read_token_file

log = logging.getLogger(__name__)

# Read by prometheus-client when first imported: set here before anything imports server.metrics.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class AppLogsRequests(Logger):
    """gunicorn's logger without its access log: the app logs every request itself (``server.requestlog``).

    Given a logging config, gunicorn gathers an access line's fields for every answer even when its access logger
    drops them: about a tenth of a cached lookup's CPU, measured with py-spy on a live worker.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class ServerApplication(BaseApplication):
    """gunicorn, configured from our settings; each worker builds its own app (and store connections).

    ``token_file``: the token file as read at start. On SIGHUP gunicorn's master reloads (``reload``) and replaces
    its workers: the file is read again first, and a bad one leaves the last good for the new workers.
    ``on_exit``: gunicorn's hook when the master stops (it stops the report pool).
    """

    def __init__(
        self,
        cfg: config_module.Config,
        token_file: TokenFile | None = None,
        on_exit: Callable[[Any], None] | None = None,
    ):
        self.settings = cfg
        self.token_file = token_file
        self.on_exit = on_exit
        super().__init__()

    def reload(self) -> None:
        if self.settings.token_file:
            try:
                self.token_file = read_token_file(self.settings.token_file)
            except TokenFileError as exc:
                log.error("ECS_ID_MAPPER_TOKEN_FILE: %s; the last good token file stays in force", exc)
        super().reload()

    def load_config(self) -> None:
        cfg = self.settings
        for name, value in {
            "bind": [cfg.bind],
            "workers": cfg.workers,
            "worker_class": "server.gunicorn_worker.JsonErrorWorker",  # gthread (see docs/performance.md), JSON errors
            "threads": cfg.threads,
            "timeout": cfg.timeout,
            "keepalive": cfg.keepalive,
            "limit_request_line": 8190,  # the largest gunicorn allows: long IDs get the app's JSON 400
            "graceful_timeout": 10,
            "accesslog": None,  # the app logs each request itself, without credentials
            "logger_class": AppLogsRequests,
            "logconfig_dict": logs.gunicorn_logconfig(cfg.log_level, cfg.log_format),
            "control_socket_disable": True,  # several servers may share a host; nothing uses it
            "loglevel": cfg.log_level.lower(),
            "child_exit": forget_worker_metrics,
            # Each worker binds its own socket and the kernel deals connections out among them: with one shared
            # socket, the worker that woke first took most keep-alive connections (docs/performance.md).
            "reuse_port": cfg.reuse_port,
        }.items():
            self.cfg.set(name, value)
        if self.on_exit is not None:
            self.cfg.set("on_exit", self.on_exit)

    def load(self) -> Flask:
        from server.app import create_app

        return create_app(self.settings, token_file=self.token_file)


def prepare_metrics_dir() -> None:
    """Give the workers an empty directory for their metric files: ``PROMETHEUS_MULTIPROC_DIR`` when set (its
    files from an earlier run removed, or counts would carry over), else a fresh one removed at exit."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return
    fresh = tempfile.mkdtemp(prefix="ecs-id-mapper-metrics-")
    os.environ[MULTIPROC_DIR] = fresh
    master = os.getpid()

    def remove() -> None:
        if os.getpid() == master:  # a worker exiting must not take the directory from the others
            shutil.rmtree(fresh, ignore_errors=True)

    atexit.register(remove)


def forget_worker_metrics(server: Any, worker: Any) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live-gauge files (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def main() -> None:
    try:
        cfg = config_module.load()
        token_file = read_token_file(cfg.token_file) if cfg.token_file else None
        # Schema and reachability checked once, before any worker starts.
        open_store(cfg.store, cfg.retention_days).close()
    except TokenFileError as exc:
        sys.exit(f"ecs-id-mapper: ECS_ID_MAPPER_TOKEN_FILE: {exc}")
    except config_module.ConfigError as exc:
        sys.exit(f"ecs-id-mapper: {exc}")
    except (StoreError, ValueError, OSError) as exc:
        sys.exit(f"ecs-id-mapper: ECS_ID_MAPPER_STORE: {exc}")
    try:
        prepare_metrics_dir()
    except OSError as exc:
        sys.exit(f"ecs-id-mapper: {MULTIPROC_DIR}: {exc}")
    if not cfg.report_workers:
        ServerApplication(cfg, token_file).run()
        return
    reports = start_report_pool(cfg)
    ServerApplication(cfg, token_file, on_exit=lambda arbiter: stop_report_pool(reports, cfg.timeout)).run()


# The report pool: a second gunicorn (its own master and workers) on ECS_ID_MAPPER_REPORT_BIND, so that reports
# and the background work they start (service names, task definitions) never hold the lookups' interpreter lock,
# and a deployment can route /report/* to it (a load balancer's path rule, or the agents' server URL).


def start_report_pool(cfg: config_module.Config) -> subprocess.Popen[bytes]:
    """Start the report pool: the same settings and app, on ``report_bind`` with ``report_workers`` workers."""
    env = {
        **os.environ,
        config_module.PREFIX + "BIND": cfg.report_bind,
        config_module.PREFIX + "WORKERS": str(cfg.report_workers),
        config_module.PREFIX + "REPORT_WORKERS": "0",
        config_module.PREFIX + "REPORT_BIND": "",
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from server.__main__ import serve_reports; serve_reports()"],
        env=env,
        preexec_fn=_die_with_parent,
    )


def serve_reports() -> None:
    """The report pool's master (started by ``start_report_pool``): the metrics directory is the main pool's."""
    cfg = config_module.load()
    ServerApplication(cfg, read_token_file(cfg.token_file) if cfg.token_file else None).run()


def stop_report_pool(process: subprocess.Popen[bytes], timeout: float) -> None:
    """gunicorn's on_exit hook of the main pool: stop the report pool as gracefully as the main one stopped."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> None:
    """In the report pool's master before it runs: Linux ends it when the main master dies, however that dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


if __name__ == "__main__":
    main()
