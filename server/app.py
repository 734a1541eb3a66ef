"""The app factory: the one place that builds the collaborators and assembles the routes around them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from server import (
    address_query,
    auth,
    discovery,
    errors,
    exposition,
    health,
    liveness,
    logs,
    metrics,
    openapi,
    query,
    rate_limit,
    report,
    requestlog,
    service_query,
)
from server import config as config_module
from server.config import Config
from server.container_instances import ContainerInstances
from server.ec2 import Ec2Client
from server.ecs import EcsClient
from server.fast_lookup import FastLookups
from server.nerdgraph import NerdGraphClient
from server.newrelic import (
    ACCOUNT_ID_VARIABLE,
    API_KEY_VARIABLE,
    NewRelicClient,
    RestV2Client,
    UnconfiguredClient,
)
from server.page import views as page
from server.retention import Pruner
from server.service_names import ServiceNames
from server.state import EXTENSION, AppState
from server.store import StoreError, open_store
from server.store.probe import HealthCheck
from server.task_definitions import TaskDefinitions
from server.token_file import TokenFile, TokenFileError
from server.tokens import Registry


def create_app(
    config: Config | Mapping[str, Any] | None = None,
    *,
    ecs: EcsClient | None = None,
    ec2: Ec2Client | None = None,
    newrelic: NewRelicClient | None = None,
    token_file: TokenFile | None = None,
) -> Flask:
    """The app, configured from defaults, then ``ECS_ID_MAPPER_*`` variables, then ``config``.

    ``ecs``, ``ec2`` and ``newrelic`` replace the clients the configuration would give (tests pass fakes);
    ``token_file``: the token file as already read (by ``python -m server``, before its workers start).
    ``state(app).close()`` stops the background worker and closes the store.
    """
    cfg = config if isinstance(config, Config) else config_module.load(config)
    logs.configure(cfg.log_level, cfg.log_format)
    try:
        tokens = Registry(cfg.token, cfg.read_token, cfg.token_file, token_file)
    except TokenFileError as exc:
        raise config_module.ConfigError(f"ECS_ID_MAPPER_TOKEN_FILE: {exc}") from None

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    json_provider = DefaultJSONProvider(app)
    json_provider.sort_keys = False
    app.json = json_provider
    app.url_map.merge_slashes = False  # '/query/container_id//_all' is a missing ID (404), not a redirect

    opened = open_store(cfg.store, cfg.retention_days)
    opened.lease = cfg.host_lease  # the store renews a host's lease once half of it passed
    store = metrics.metered(opened)
    # Read at most every 5 s, and well within a short lease, so that no replica sees a live host lapse.
    leases = liveness.Leases(
        store.host_leases, cfg.host_lease, interval=min(5.0, cfg.host_lease / 10), failures=(StoreError,)
    )
    ecs = ecs or EcsClient()  # makes its boto3 client on first use, never here
    app.extensions[EXTENSION] = AppState(
        config=cfg,
        store=store,
        ecs=ecs,
        newrelic=newrelic or newrelic_client(cfg),
        service_names=ServiceNames(ecs, store),
        task_definitions=TaskDefinitions(ecs, store),
        container_instances=ContainerInstances(ecs, ec2 or Ec2Client(), store),
        health=HealthCheck(store, cfg.health_interval),
        containers_on_record=metrics.ContainersOnRecord(store),
        leases=leases,
        running_on_record=metrics.RunningOnRecord(store, leases),
        # Started here; a worker forked after this (gunicorn --preload) starts its own.
        pruner=None if store.expires_itself or not store.retention else Pruner(store).start(),
        tokens=tokens,
    )

    rate_limit.init_app(app, cfg.reports_per_host_minute, cfg.hosts_per_token)
    errors.register(app)
    for module in (query, service_query, address_query, report, health, discovery, openapi, exposition, page):
        app.register_blueprint(module.bp)
    if cfg.read_token or cfg.token_file:
        auth.protect_reads(app, (query.bp, service_query.bp, address_query.bp, discovery.bp, exposition.bp))
    app.wsgi_app = requestlog.RequestLog(FastLookups(app, app.wsgi_app))  # type: ignore[method-assign]
    return app


def newrelic_client(config: Config) -> NewRelicClient:
    """The client ``newrelic_api`` names; UnconfiguredClient when the API key or account ID is missing."""
    missing = [
        variable
        for variable, value in (
            (API_KEY_VARIABLE, config.newrelic_api_key),
            (ACCOUNT_ID_VARIABLE, config.newrelic_account_id),
        )
        if not value
    ]
    if missing:
        return UnconfiguredClient(missing)
    if config.newrelic_api == "nerdgraph":
        return NerdGraphClient(config.newrelic_api_key, config.newrelic_account_id, config.newrelic_api_url)
    return RestV2Client(
        api_key=config.newrelic_api_key,
        account_id=config.newrelic_account_id,
        api_url=config.newrelic_api_url,
        instance_url_template=config.newrelic_instance_url,
        application_url_template=config.newrelic_application_url,
    )
