"""Two app instances (as two gunicorn workers would be) on one SQLite file."""

from __future__ import annotations

import threading

from server.state import state
from tests.server import samples
from tests.server.samples import AUTH


def test_a_report_to_one_is_answered_by_the_other(make_app, settings):
    one, two = make_app(settings).test_client(), make_app(settings).test_client()
    one.post("/report/map", json=samples.map_report(samples.container()), headers=AUTH)
    assert two.get(f"/query/container_id/{samples.API_ID[:12]}").get_data(as_text=True) == f"{samples.TASK_LONG}\n"
    two.post("/report/event", json={"events": [samples.event("e-1")]}, headers=AUTH)
    events = one.get(f"/query/task_id/{samples.TASK_LONG}/events").get_json()
    assert [e["event"] for e in events] == ["appeared", "known_status"]  # the first recorded by the server itself


def test_concurrent_writers_lose_nothing(make_app, settings):
    apps = [make_app(settings) for _ in range(4)]
    errors = []

    def write(n: int) -> None:
        client = apps[n].test_client()
        for i in range(25):
            cid = f"{n:02x}{i:062x}"
            body = samples.map_report(samples.container(cid, f"c{n}-{i:02d}"), events=[samples.event(f"e{n}-{i}", cid)])
            response = client.post("/report/map", json=body, headers=AUTH)
            if response.status_code != 200:
                errors.append(response.get_json())

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = state(apps[0]).store
    assert len(store.containers_of_task(samples.TASK_LONG)) == 100
    events = store.events_of_task(samples.TASK_LONG)
    assert sum(e["event"] == "known_status" for e in events) == sum(e["event"] == "appeared" for e in events) == 100
