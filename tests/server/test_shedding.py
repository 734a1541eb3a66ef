"""Load shedding: a report that waited too long for a thread, or one too many at once, is refused with 503 and
Retry-After before anything is stored; lookups are never refused for it."""

from __future__ import annotations

import random

import pytest

from server import shedding
from server.gunicorn_worker import note_queue_wait
from tests.server import samples
from tests.server.samples import API_ID, AUTH


@pytest.fixture(autouse=True)
def no_wait():
    note_queue_wait(0.0)
    yield
    note_queue_wait(0.0)


def post(client):
    return client.post("/report/map", json=samples.map_report(samples.container()), headers=AUTH)


def test_a_report_that_waited_past_the_bound_is_refused_with_retry_after_and_not_stored(client):
    note_queue_wait(1.5)
    response = post(client)
    assert response.status_code == 503
    assert response.get_json()["error"] == "service_unavailable"
    assert "waited 1.5 s" in response.get_json()["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= shedding.MAX_RETRY_AFTER
    note_queue_wait(0.0)
    assert client.get(f"/query/container_id/{API_ID}").status_code == 404
    assert post(client).status_code == 200  # the same report, sent again when the server keeps up


def test_lookups_are_never_refused_for_waiting(client, report):
    report(samples.container())
    note_queue_wait(30.0)
    assert client.get(f"/query/container_id/{API_ID}").status_code == 200


def test_the_bound_is_a_setting_and_zero_switches_it_off(make_app, settings):
    client = make_app({**settings, "report_max_wait": 0}).test_client()
    note_queue_wait(30.0)
    assert post(client).status_code == 200


def test_a_report_beyond_the_concurrency_bound_is_refused(make_app, settings):
    client = make_app({**settings, "report_concurrency": 2}).test_client()
    entered = [shedding.PACE.enter(0), shedding.PACE.enter(0)]  # two reports in progress in this process
    try:
        response = post(client)
        assert response.status_code == 503
        assert "2 reports are in progress" in response.get_json()["message"]
        assert "Retry-After" in response.headers
    finally:
        for moment in entered:
            shedding.PACE.leave(moment)
    assert post(client).status_code == 200
    assert shedding.PACE.in_flight == 0  # an admitted report leaves when answered


def test_a_report_the_checks_refuse_still_leaves_the_count(client):
    response = client.post("/report/map", json={"containers": "no"}, headers=AUTH)
    assert response.status_code == 400
    assert shedding.PACE.in_flight == 0


def test_unauthorised_reports_get_their_401_not_a_503(client):
    note_queue_wait(5.0)
    assert client.post("/report/map", json={}).status_code == 401


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Longest(random.Random):
    """Picks the longest wait the pace allows, to read the bound."""

    def randint(self, a: int, b: int) -> int:
        return b


def test_retry_after_grows_with_the_backlog_refused_against_the_rate_taken():
    clock = FakeClock()
    pace = shedding.Pace(clock, Longest())
    for _ in range(20):  # 20 reports taken in the last 10 s: 2 a second, each in 0.5 s
        entered = pace.enter(0)
        clock.now += 0.5
        pace.leave(entered)
    assert pace.refuse() == 1  # one refused: half a second of work
    waits = [pace.refuse() for _ in range(39)]
    assert waits[-1] in (19, 20)  # 40 refused at about 2 a second
    assert waits == sorted(waits)
    clock.now += shedding.WINDOW + 1  # nothing taken lately: one at a time, 0.5 s each
    assert [pace.refuse() for _ in range(4)] == [1, 1, 2, 2]


def test_the_first_refusals_of_a_storm_count_on_the_rate_of_the_reports_in_flight():
    clock = FakeClock()
    pace = shedding.Pace(clock, Longest())
    in_flight = [pace.enter(4) for _ in range(4)]
    assert pace.enter(4) is None
    # Nothing taken yet: 4 in flight at the first guess of 0.1 s each is 40 a second.
    waits = [pace.refuse() for _ in range(400)]
    assert waits[39] == 1 and waits[40] == 2 and waits[399] == 10
    clock.now += 2.0
    for entered in in_flight:
        pace.leave(entered)  # they took 2 s each: the guess moves towards it
    assert pace.duration > shedding.FIRST_DURATION
    assert pace.refuse() > 10


def test_clients_refused_together_are_given_moments_spread_over_the_backlog():
    pace = shedding.Pace(FakeClock(), random.Random(4))
    waits = [pace.refuse() for _ in range(3000)][2000:]
    assert min(waits) <= 5 and max(waits) >= 55
    assert all(shedding.MIN_RETRY_AFTER <= w <= shedding.MAX_RETRY_AFTER for w in waits)
