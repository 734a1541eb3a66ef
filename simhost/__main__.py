"""`python -m simhost`: a simulated ECS host on loopback until SIGINT or SIGTERM.

Prints one JSON line with the two URLs to give the agent (`ECS_ID_MAPPER_ECS_AGENT_URL`, `ECS_ID_MAPPER_IMDS_URL`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from simhost.host import SimulatedHost
from simhost.server import SimHostServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simhost", description=__doc__.splitlines()[0])
    parser.add_argument("--ecs-port", type=int, default=0, help="introspection API port (default: any free one)")
    parser.add_argument("--imds-port", type=int, default=0, help="instance metadata port (default: any free one)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed makes the same tasks and IDs")
    parser.add_argument("--tasks", type=int, default=4, help="tasks kept alive, new ones replacing those that stop")
    parser.add_argument("--run", type=float, nargs=2, default=(30.0, 90.0), metavar=("MIN", "MAX"),
                        help="seconds a task runs before it is stopped")  # fmt: skip
    parser.add_argument("--linger", type=float, default=30.0, help="seconds a stopped task stays listed")
    parser.add_argument("--cluster", default="default")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = SimulatedHost(
        args.seed, churn=args.tasks, cluster=args.cluster, run_seconds=tuple(args.run), linger_seconds=args.linger
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with SimHostServer(host, args.ecs_port, args.imds_port) as sim:
        print(json.dumps({"ecs_agent_url": sim.ecs_url, "imds_url": sim.imds_url}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
