"""ECS ID Mapper server: a Flask app that records the agents' reports and answers queries about them."""

from __future__ import annotations

from server.app import create_app

__all__ = ["create_app"]
