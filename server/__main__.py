"""``python -m server``: validate the configuration, then serve the app under gunicorn."""

from __future__ import annotations

import sys

from flask import Flask
from gunicorn.app.base import BaseApplication

from server import config as config_module
from server import logs
from server.app import create_app
from server.store import StoreError, open_store


class ServerApplication(BaseApplication):
    """gunicorn, configured from our settings; each worker builds its own app (and store connections)."""

    def __init__(self, cfg: config_module.Config):
        self.settings = cfg
        super().__init__()

    def load_config(self) -> None:
        cfg = self.settings
        for name, value in {
            "bind": [cfg.bind],
            "workers": cfg.workers,
            "worker_class": "gthread",  # chosen from bench/lookup.py: see docs/performance.md
            "threads": cfg.threads,
            "timeout": cfg.timeout,
            "keepalive": cfg.keepalive,
            "limit_request_line": 8190,  # the largest gunicorn allows: long IDs get the app's JSON 400
            "graceful_timeout": 10,
            "accesslog": None,  # the app logs each request itself, without credentials
            "logconfig_dict": logs.gunicorn_logconfig(cfg.log_level, cfg.log_format),
            "control_socket_disable": True,  # several servers may share a host; nothing uses it
            "loglevel": cfg.log_level.lower(),
        }.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return create_app(self.settings)


def main() -> None:
    try:
        cfg = config_module.load()
        # Schema and reachability checked once, before any worker starts.
        open_store(cfg.store, cfg.retention_days).close()
    except config_module.ConfigError as exc:
        sys.exit(f"ecs-id-mapper: {exc}")
    except (StoreError, ValueError, OSError) as exc:
        sys.exit(f"ecs-id-mapper: ECS_ID_MAPPER_STORE: {exc}")
    ServerApplication(cfg).run()


if __name__ == "__main__":
    main()
