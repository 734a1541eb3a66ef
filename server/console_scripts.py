"""The console scripts ``pip install`` makes (``[project.scripts]``): each runs its command, or says in one line which
extra to install when the server's dependencies are missing (``pip install .`` alone installs only the agent's)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

#: The top-level modules of the ``server`` extra's packages (pyproject.toml).
SERVER_EXTRA_MODULES = frozenset({"flask", "werkzeug", "gunicorn", "boto3", "botocore", "prometheus_client"})
INSTALL_SERVER_EXTRA = "pip install 'ecs-id-mapper[server]'"


def server() -> None:
    """``ecs-id-mapper-server``: ``python -m server``."""
    command("ecs-id-mapper-server", "server.__main__")()


def feed() -> None:
    """``ecs-id-mapper-feed``: ``python -m server.feed``."""
    command("ecs-id-mapper-feed", "server.feed")()


def flowlogs() -> None:
    """``ecs-id-mapper-flowlogs``: ``python -m server.flowlogs``, exiting with its status."""
    status = command("ecs-id-mapper-flowlogs", "server.flowlogs")()
    sys.exit(status if isinstance(status, int) else 0)


def command(script: str, module: str) -> Callable[[], object]:
    """The ``main`` of ``module``; exits 1 with one line naming the extra if a module of that extra is missing."""
    try:
        main: Callable[[], object] = importlib.import_module(module).main
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in SERVER_EXTRA_MODULES:
            raise  # not a missing dependency: a fault of our own, shown whole
        sys.exit(f"{script} needs the server extra: {INSTALL_SERVER_EXTRA} (no module named {missing!r})")
    return main
