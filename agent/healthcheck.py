"""``python -m agent.healthcheck``: the agent image's HEALTHCHECK. With ``ECS_ID_MAPPER_METRICS_PORT`` set, exit 0
when the agent answers ``GET /metrics`` there and 1 otherwise; without it the agent listens nowhere, so there is
nothing to ask and it exits 0 saying so."""

from __future__ import annotations

import http.client
import os
import sys

from agent.config import PREFIX

WILDCARDS = {"", "0.0.0.0", "*"}  # an empty host is agent.config's 127.0.0.1


def check(setting: str, timeout: float = 4.0) -> str | None:
    """None when the agent's metrics answer 200 at ``setting`` (``PORT`` or ``HOST:PORT``), else why not."""
    host, _, port_text = setting.rpartition(":")  # as agent.config reads it: PORT (on 127.0.0.1) or HOST:PORT
    port = int(port_text) if port_text.isdigit() else 0
    if not 0 < port < 65536:
        return f"{PREFIX}METRICS_PORT: expected PORT or HOST:PORT, got {setting!r}"
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
