"""ECS ID Mapper server: a Flask app that records the agents' reports and answers queries about them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from server import config as config_module
from server.config import Config
from server.health import HealthCheck
from server.lru import LRU
from server.retention import Pruner
from server.store import Store, open_store

__all__ = ["AppState", "create_app"]


@dataclass
class AppState:
    """What the routes share, kept in ``app.extensions["ecs_id_mapper"]``."""

    config: Config
    store: Store
    health: HealthCheck
    #: full container ID → task ID; a container never changes task, so this never goes stale.
    task_of_container: LRU[str, str] = field(default_factory=lambda: LRU(50_000))
    #: Removes expired containers in the background, where the store does not expire them itself.
    pruner: Pruner | None = None


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """The app, configured from defaults, then ``ECS_ID_MAPPER_*`` variables, then ``config``."""
    from server import errors, health, query, report, service

    cfg = config if isinstance(config, Config) else config_module.load(config)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False
    app.url_map.merge_slashes = False  # '/query/container_id//_all' is a missing ID (404), not a redirect
    store = open_store(cfg.store, cfg.retention_days)
    state = AppState(cfg, store, HealthCheck(store, cfg.health_interval))
    app.extensions["ecs_id_mapper"] = state
    if store.retention and not store.expires_itself:
        state.pruner = Pruner(store)
        state.pruner.start()

    errors.register(app)
    app.register_blueprint(query.bp)
    app.register_blueprint(report.bp)
    app.register_blueprint(health.bp)
    service.init_app(app)
    return app
