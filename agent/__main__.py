"""`python -m agent` and `ecs-id-mapper-agent`: configure from the environment, then poll until SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import requests

from agent import logs
from agent.config import ConfigError, load_config
from agent.daemon import Agent


def main() -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"ecs-id-mapper-agent: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()  # nothing else: the loop finishes its cycle and flushes

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with requests.Session() as session:
        Agent(config, session).run(stop)
    logging.getLogger("agent").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
