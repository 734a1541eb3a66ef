from __future__ import annotations

import threading

from server.state import state
from server.store import Store, StoreUnavailable
from server.store.probe import HealthCheck
from tests.clock import Clock


class FlakyStore:
    kind = "flaky"

    def __init__(self):
        self.up = True
        self.pings = 0

    def ping(self):
        self.pings += 1
        if not self.up:
            raise StoreUnavailable("down")


def test_store_is_asked_at_most_once_per_interval():
    store, clock = FlakyStore(), Clock()
    check = HealthCheck(store, interval=5, clock=clock)
    assert [check.problem() for _ in range(50)] == [None] * 50
    assert store.pings == 1
    store.up = False
    clock.now += 4.9
    assert check.problem() is None  # still the cached answer
    clock.now += 0.2
    assert check.problem() == "down"
    store.up = True
    clock.now += 5
    assert check.problem() is None
    assert store.pings == 3


def test_health_route_ok(client):
    response = client.get("/health")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok", "store": "sqlite"})


def test_health_route_503_when_the_store_fails(app, client, monkeypatch):
    store: Store = state(app).store

    def down():
        raise StoreUnavailable("disk on fire")

    monkeypatch.setattr(store, "ping", down)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable"


def test_queries_answer_503_when_the_store_fails(app, client, monkeypatch):
    store = state(app).store

    def down(*args):
        raise StoreUnavailable("disk on fire")

    monkeypatch.setattr(store, "get_container", down)
    response = client.get("/query/container_id/" + "a" * 64)
    assert response.status_code == 503
    assert "disk on fire" not in response.get_json()["message"]


def test_probes_do_not_queue_behind_a_slow_check():
    store, clock = FlakyStore(), Clock()
    check = HealthCheck(store, interval=5, clock=clock)
    assert check.problem() is None
    clock.now += 10
    entered, release = threading.Event(), threading.Event()

    def slow_ping():
        entered.set()
        release.wait(10)

    store.ping = slow_ping
    slow = threading.Thread(target=check.problem)
    slow.start()
    assert entered.wait(10)
    answered: list[str | None] = []
    probe = threading.Thread(target=lambda: answered.append(check.problem()))
    probe.start()
    probe.join(2)
    assert answered == [None]  # answered from the last check while the slow one still runs
    release.set()
    slow.join()
    probe.join()
