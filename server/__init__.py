"""ECS ID Mapper server: a Flask app that records the agents' reports and answers queries about them."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: ``python -m server`` must set PROMETHEUS_MULTIPROC_DIR
    # before anything imports prometheus-client (see server.metrics).
    if name == "create_app":
        from server.app import create_app

        return create_app
    raise AttributeError(f"module 'server' has no attribute {name!r}")
