"""The ceiling the lookups are measured against: one Flask route that answers a constant, served by the very
gunicorn settings ``python -m server`` uses (``python -m bench.bare``, configured by the same variables)."""

from __future__ import annotations

from flask import Flask, Response

from server import config as config_module
from server.__main__ import ServerApplication

ANSWER = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e\n"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/bare/<name>")
    def bare(name: str) -> Response:
        return Response(ANSWER, mimetype="text/plain")

    @app.get("/health")
    def health() -> Response:
        return Response("ok\n", mimetype="text/plain")

    return app


class BareApplication(ServerApplication):
    def load(self) -> Flask:
        return create_app()


if __name__ == "__main__":
    BareApplication(config_module.load()).run()
