"""``python -m agent.healthcheck``: the agent image's HEALTHCHECK. With ``ECS_ID_MAPPER_METRICS_PORT`` set, exit 0
when the agent answers ``GET /metrics`` there and 1 otherwise; without it the agent listens nowhere, so there is
nothing to ask and it exits 0 saying so."""

from __future__ import annotations

import http.client
import os
import sys

from agent.config import PREFIX, ConfigError, _address

WILDCARDS = {"", "0.0.0.0", "*"}


def check(setting: str, timeout: float = 4.0) -> str | None:
    """None when the agent's metrics answer 200 at ``setting`` (``PORT`` or ``HOST:PORT``), else why not."""
    try:
        host, port = _address(PREFIX + "METRICS_PORT", setting)
    except ConfigError as exc:
        return str(exc)
    if host in WILDCARDS or host.strip("[]") == "::":
        host = "::1" if ":" in host else "127.0.0.1"
    conn = http.client.HTTPConnection(host.strip("[]"), port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"{setting}: {exc}"
    finally:
        conn.close()
    return None if status == 200 else f"{setting}: /metrics answered {status}"


def main() -> int:
    setting = os.environ.get(PREFIX + "METRICS_PORT", "")
    if not setting:
        print(f"{PREFIX}METRICS_PORT is not set: the agent serves nothing to check")
        return 0
    problem = check(setting)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
