"""A task's life through the whole loop: simulated host → agent process → gunicorn server, on every store.

After each change of the host, once the agent has polled twice (it has read the change and finished the cycle that
reported it), every query route answers the new state: no waiting and retrying on the test's side.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.drills.loop import Loop, check_record
from tests.store.conftest import REGION
from tests.support import free_port

pytestmark = pytest.mark.slow

SHARED_STORES = {
    "sdb": "sdb://loop{name}?region={region}&endpoint_url={url}",
    "dynamodb": "dynamodb://loop{name}?region={region}&endpoint_url={url}&create=true",
}


@pytest.fixture(params=["sqlite", "sdb", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/loop.sqlite3"
        return
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    url = SHARED_STORES[request.param].format(name=uuid.uuid4().hex[:8], region=REGION, url=f"http://127.0.0.1:{port}")
    yield url + "&max_attempts=2&connect_timeout=1&read_timeout=5"
    moto.stop()


@pytest.fixture
def loop(tmp_path, store) -> Iterator[Loop]:
    loop = Loop(tmp_path, store)
    loop.start_server()
    loop.start_agent()
    yield loop
    loop.close()
    assert "Traceback" not in loop.server.log() + loop.agent.log()


def answers(loop: Loop, task_id: str, cids: list[str]) -> dict[str, object]:
    """What every query route answers about one task and its first container, in comparable form."""
    short = cids[0][:12]

    def events(path: str) -> list[tuple[str, str, str, str]]:
        return [(e["container_id"][:12], e["event"], e["from"] or "", e["to"] or "") for e in loop.get(path).json()]

    container = loop.get(f"/query/container_id/{cids[0]}/_all").json()
    task_all = loop.get(f"/query/task_id/{task_id}/_all").json()
    return {
        "task of container": loop.get(f"/query/container_id/{short}").text,
        "container status": (container["desired_status"], container["known_status"], bool(container.get("stopped_at"))),
        "container link": loop.get(f"/query/container_id/{short}/cadvisor").text.strip().endswith(cids[0]),
        "container redirect": loop.get(f"/query/container_id/{short}/cadvisor?redir=true").status_code,
        "container urls": sorted(loop.get(f"/query/container_id/{short}/urls").json()),
        "container events": events(f"/query/container_id/{short}/events"),
        "task containers": loop.get(f"/query/task_id/{task_id}").text.split(),
        "task _all": (task_all["container_id"], task_all["known_status"], task_all["task_containers"]),
        "task records": [r["known_status"] for r in loop.get(f"/query/task_id/{task_id}/containers").json()],
        "task link": loop.get(f"/query/task_id/{task_id}/cadvisor").text.strip().endswith(cids[0]),
        "task events": sorted(events(f"/query/task_id/{task_id}/events")),
    }


def test_a_tasks_life_is_answered_by_every_route_within_two_polls(loop):
    host = loop.host
    task = host.start_task(
        "api", containers=2, awsvpc=True, old_arn=loop.server_env["ECS_ID_MAPPER_STORE"][:3] == "sdb"
    )
    cids = [c.docker_id for c in task.containers]  # "api" sorts before "sidecar-1"
    a, b = (cid[:12] for cid in cids)
    loop.polls()
    assert loop.get(f"/query/task_id/{task.task_id}").status_code == 404  # listed, but no container exists yet

    life = []
    for step, status, new_events in (
        ("created", ("RUNNING", "PENDING", False), [("appeared", "", "PENDING")]),
        ("running", ("RUNNING", "RUNNING", False), [("known_status", "PENDING", "RUNNING")]),
        ("stopping", ("STOPPED", "RUNNING", False), [("desired_status", "RUNNING", "STOPPED")]),
        ("stopped", ("STOPPED", "STOPPED", True), [("known_status", "RUNNING", "STOPPED")]),
        ("vanished", ("STOPPED", "STOPPED", True), [("vanished", "STOPPED", "")]),
    ):
        host.advance(task, step)
        loop.polls()
        life += new_events
        assert answers(loop, task.task_id, cids) == {
            "task of container": f"{task.task_id}\n",
            "container status": status,
            "container link": True,
            "container redirect": 302,
            "container urls": ["cadvisor"],
            "container events": [(a, *event) for event in life],
            "task containers": cids,
            "task _all": (cids[0], status[1], ["api", "sidecar-1"]),
            "task records": [status[1]] * 2,
            "task link": True,
            "task events": sorted((cid, *event) for cid in (a, b) for event in life),
        }, step
    assert check_record(loop) == []
