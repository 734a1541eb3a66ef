"""The agent's own metrics, in Prometheus text format on an optional local port (``ECS_ID_MAPPER_METRICS_PORT``).

Written by hand, a few lines, so the agent image keeps needing only ``requests``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.daemon import Agent

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(agent: Agent) -> str:
    """Every metric of ``agent`` as it stands, in Prometheus text format."""
    return "".join(_lines(agent))


def _lines(agent: Agent) -> Iterator[str]:
    def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> Iterator[str]:
        yield f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
        for labels, value in samples:
            yield f"{name}{labels} {float(value)!r}\n"

    yield from family("ecs_id_mapper_agent_polls_total", "counter", "Poll cycles run.", [("", agent.polls)])
    yield from family(
        "ecs_id_mapper_agent_poll_failures_total",
        "counter",
        "Poll cycles that met a failure, by cause (ecs_agent, instance_metadata, delivery, error).",
        [(f'{{cause="{cause}"}}', agent.poll_failures.get(cause, 0)) for cause in POLL_FAILURE_CAUSES],
    )
    yield from family(
        "ecs_id_mapper_agent_outbox_depth",
        "gauge",
        "Container states and events waiting to be delivered.",
        [("", len(agent.outbox))],
    )
    yield from family(
        "ecs_id_mapper_agent_events_dropped_total",
        "counter",
        "Events given up on, by reason (outbox_full: past its bound; rejected: the server refused the report).",
        [
            ('{reason="outbox_full"}', agent.outbox.dropped_events),
            ('{reason="rejected"}', agent.delivery.dropped_events),
        ],
    )
    yield from family(
        "ecs_id_mapper_agent_seconds_since_last_delivery",
        "gauge",
        "Seconds since the server last accepted a report (since the agent started, before the first).",
        [("", agent.seconds_since_delivery())],
    )


POLL_FAILURE_CAUSES = ("ecs_agent", "instance_metadata", "delivery", "error")


def serve(agent: Agent, address: tuple[str, int]) -> ThreadingHTTPServer:
    """Answer ``GET /metrics`` on ``address`` from a daemon thread; ``shutdown()`` the result to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = exposition(agent).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # http.server's signature
            log.debug("metrics: " + format, *args)

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", *server.server_address[:2])
    return server
