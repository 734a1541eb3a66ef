"""``/sd/prometheus`` from the answer each process keeps: two replicas on one SQLite file agree after every kind of
change, ETag and If-None-Match, filters cut from the kept answer as they would be computed, and lost containers
judged as ``server.liveness`` judges them."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server import liveness, running_set
from server.discovery import LABELS, Filters, answers, target_groups
from server.discovery_cache import Held
from server.records import format_time, utc_now
from server.state import state
from testkit.records import T0
from tests.server import ecs_samples, samples
from tests.server.samples import AUTH


@pytest.fixture
def pair(make_app, settings):
    """Two replicas (two apps, each with its own kept answer) on one SQLite file."""
    return make_app(settings).test_client(), make_app(settings).test_client()


def fresh(client) -> list[dict]:
    """The answer computed as the route did before it kept one."""
    app_state = state(client.application)
    return target_groups(app_state.leases.annotate(app_state.store.running_containers(), utc_now()))


def shown(*clients) -> list[list[str]]:
    """The targets both replicas show, each checked against the fresh computation; the same ETag on both."""
    answers_ = [client.get("/sd/prometheus") for client in clients]
    for client, answer in zip(clients, answers_, strict=True):
        assert answer.status_code == 200 and answer.get_json() == fresh(client)
    assert len({answer.headers["ETag"] for answer in answers_}) == 1
    assert all(answer.get_json() == answers_[0].get_json() for answer in answers_)
    return [group["targets"] for group in answers_[0].get_json()]


def report(client, *containers, **kwargs) -> None:
    answer = client.post("/report/map", json=samples.map_report(*containers, **kwargs), headers=AUTH)
    assert answer.status_code == 200, answer.get_json()


def test_two_replicas_show_every_change_at_the_next_request(pair):
    one, two = pair
    assert shown(one, two) == []
    report(one, samples.container())  # a new running container
    assert shown(one, two) == [["10.0.1.17:49153"]]
    moved = [{"container_port": 8000, "host_port": 49999, "protocol": "tcp"}]
    report(two, samples.container(ports=moved))  # a port change
    assert shown(one, two) == [["10.0.1.17:49999"]]
    report(one, samples.container(ports=moved), samples.container(samples.SIDECAR_ID, "sidecar"))
    assert len(shown(one, two)) == 2
    report(two, samples.container(ports=moved), full=True)  # the sidecar vanished from the host's snapshot
    assert shown(one, two) == [["10.0.1.17:49999"]]

    running = ecs_samples.task_event(
        3, "RUNNING", [ecs_samples.container("api", "RUNNING", ecs_samples.API_RUNTIME_ID,
                                             networkBindings=[ecs_samples.binding(8080, 8080)])]
    )  # fmt: skip
    assert one.post("/report/ecs-events", json=[running], headers=AUTH).status_code == 200  # the feed's events
    assert shown(one, two) == [["10.0.1.17:49999"], ["10.20.3.41:8080"]]
    stopped = ecs_samples.task_event(
        5, "STOPPED", [ecs_samples.container("api", "STOPPED", ecs_samples.API_RUNTIME_ID, exitCode=0)]
    )
    assert two.post("/report/ecs-events", json=[stopped], headers=AUTH).status_code == 200
    assert shown(one, two) == [["10.0.1.17:49999"]]

    report(one, samples.container(known_status="STOPPED", ports=moved))  # a stop
    assert shown(one, two) == []


def test_a_host_lost_by_its_lease_leaves_both_replicas_without_a_write(make_app, settings):
    lapsing = {**settings, "host_lease": "60"}
    one, two = make_app(lapsing).test_client(), make_app(lapsing).test_client()
    for client in (one, two):
        state(client.application).leases.interval = 0  # read the leases at every request
    report(one, samples.container())
    assert shown(one, two) == [["10.0.1.17:49153"]]
    clock = [utc_now()]
    for client in (one, two):
        answers(client.application).now = lambda: clock[0]
    clock[0] = format_time(T0.replace(year=2100))  # long after the lease lapsed
    assert [client.get("/sd/prometheus").get_json() for client in (one, two)] == [[], []]


def test_an_unchanged_resync_reads_nothing_and_builds_nothing(client):
    report(client, samples.container())
    client.get("/sd/prometheus")
    kept = answers(client.application)
    before = (kept.reads, kept.builds)
    report(client, samples.container(), full=True)  # sampled again: last_seen moves, nothing discovery shows
    client.post("/report/map", json=samples.map_report(), headers=AUTH)  # a keep-alive
    for _ in range(3):
        assert client.get("/sd/prometheus").status_code == 200
    assert (kept.reads, kept.builds) == before


def test_a_refresh_interval_bounds_how_old_the_answer_is(client):
    kept = answers(client.application)
    moment = [0.0]
    kept.refresh, kept.clock = 10.0, lambda: moment[0]
    assert client.get("/sd/prometheus").get_json() == []
    report(client, samples.container())
    moment[0] = 9.9
    assert client.get("/sd/prometheus").get_json() == []  # the generation is not asked again yet
    moment[0] = 10.0
    assert [g["targets"] for g in client.get("/sd/prometheus").get_json()] == [["10.0.1.17:49153"]]


def test_etag_and_if_none_match(pair):
    one, two = pair
    report(one, samples.container())
    first = one.get("/sd/prometheus")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")  # strong: a digest of the bytes
    assert first.headers["Cache-Control"] == "no-cache"

    for given_ in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = two.get("/sd/prometheus", headers={"If-None-Match": given_})  # the other replica: the same tag
        assert (again.status_code, again.data, again.headers["ETag"]) == (304, b"", etag)
    assert two.get("/sd/prometheus", headers={"If-None-Match": '"other"'}).status_code == 200

    same = one.get("/sd/prometheus?port=8000", headers={"If-None-Match": etag})
    assert same.status_code == 304  # the filter keeps every group: the very bytes, the same tag
    other = one.get("/sd/prometheus?port=8001", headers={"If-None-Match": etag})
    assert (other.status_code, other.get_json()) == (200, [])
    assert other.headers["ETag"] != etag

    report(two, samples.container(known_status="STOPPED"))
    changed = one.get("/sd/prometheus", headers={"If-None-Match": etag})
    assert (changed.status_code, changed.get_json()) == (200, [])
    assert changed.headers["ETag"] != etag


def test_gzip_for_a_client_that_asks_for_it(client):
    report(client, samples.container())
    plain = client.get("/sd/prometheus")
    packed = client.get("/sd/prometheus", headers={"Accept-Encoding": "gzip, deflate"})
    assert (packed.status_code, packed.headers["Content-Encoding"]) == (200, "gzip")
    assert gzip.decompress(packed.data) == plain.data and "Content-Encoding" not in plain.headers
    assert packed.headers["ETag"] == plain.headers["ETag"][:-1] + '.gz"'  # another representation, another tag
    assert "Accept-Encoding" in packed.headers["Vary"] and "Accept-Encoding" in plain.headers["Vary"]
    again = client.get("/sd/prometheus", headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/sd/prometheus", headers={"Accept-Encoding": "gzip;q=0"}).data == plain.data


def test_the_body_is_what_jsonify_wrote(client):
    report(client, samples.container(), samples.container(samples.SIDECAR_ID, "sidecar"))
    body = client.get("/sd/prometheus").data
    assert body == client.application.json.response(fresh(client)).data


# Filters on the kept answer

NAMES = st.sampled_from(["api", "worker", ""])
PORT_LISTS = st.lists(
    st.fixed_dictionaries({
        "container_port": st.sampled_from([80, 8000, 9090]),
        "host_port": st.sampled_from([0, 32768, 49153]),
        "protocol": st.sampled_from(["tcp", "udp"]),
    }),
    max_size=3,
)  # fmt: skip
AWSVPC = [{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.2.5"], "ipv6_addresses": []}]


@st.composite
def running_records(draw) -> list[dict]:
    found = []
    for n in range(draw(st.integers(0, 6))):
        record = {
            "container_id": f"{n:064x}",
            "task_id": f"{n % 3:032x}",
            "known_status": "RUNNING",
            "cluster_name": draw(NAMES),
            "service_name": draw(NAMES),
            "container_name": draw(NAMES),
            "instance_ip": "10.0.1.17",
            "ports": json.dumps(draw(PORT_LISTS)),
            "networks": json.dumps(AWSVPC if draw(st.booleans()) else []),
        }
        found.append(record)
    return found


FILTERS = st.builds(
    Filters,
    cluster=st.sampled_from([None, "api", "worker"]),
    service=st.sampled_from([None, "api", "worker"]),
    port=st.sampled_from([None, 80, 8000, 9090, 1]),
    container_name=st.sampled_from([None, "api", "worker"]),
)


@settings(max_examples=300, deadline=None)
@given(running_records(), FILTERS)
def test_a_filter_cut_from_the_whole_answer_is_the_filtered_answer(found, filters):
    assert [group for group in target_groups(found) if filters.shows(group)] == target_groups(found, filters)


@pytest.mark.parametrize(
    "query", ["", "cluster=default", "service=api", "port=8000", "port=8001", "container_name=sidecar",
              "cluster=default&port=9100&container_name=sidecar", "cluster=other"]
)  # fmt: skip
def test_filtered_answers_from_the_route_equal_the_fresh_computation(client, query):
    sidecar_ports = [{"container_port": 9100, "host_port": 32800, "protocol": "tcp"}]
    report(client, samples.container(), samples.container(samples.SIDECAR_ID, "sidecar", ports=sidecar_ports))
    filters = Filters.parse({k: [v] for k, v in (p.split("=") for p in query.split("&") if p)})
    app_state = state(client.application)
    expected = target_groups(app_state.leases.annotate(app_state.store.running_containers(), utc_now()), filters)
    for _ in range(2):  # built, then kept
        assert client.get(f"/sd/prometheus?{query}").get_json() == expected


# Lost, as server.liveness judges it

MOMENTS = st.integers(0, 4_000).map(lambda ms: format_time(T0 + timedelta(milliseconds=ms)))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["i-1", "i-2", "i-3", ""]), st.one_of(st.just(""), MOMENTS)), max_size=8),
    st.dictionaries(st.sampled_from(["i-1", "i-2", "i-3"]), MOMENTS),
    st.sampled_from([0.5, 1.0, 1.2345, 2.0]),
    MOMENTS,
)
def test_the_lost_are_those_liveness_finds(hosts, renewed, lease, now):
    found = [
        {"container_id": f"{n:064x}", "known_status": "RUNNING", "instance_id": host, "last_seen": seen}
        for n, (host, seen) in enumerate(hosts)
    ]
    leases = {liveness.host_key({"instance_id": host}): at for host, at in renewed.items()}
    held = Held(found, "0", 0.0)
    expected = {n for n, record in enumerate(liveness.annotate(found, leases, lease, now)) if "lost_since" in record}
    assert held.lost(leases, lease, now) == expected
    assert held.lost(None, lease, now) == frozenset()


def test_discovery_reads_only_the_fields_a_write_counts():
    assert set(LABELS.values()) <= set(running_set.SHOWN_FIELDS)
    record = {
        "container_id": f"{7:064x}",
        "known_status": "RUNNING",
        "instance_ip": "10.0.1.17",
        "ports": json.dumps([{"container_port": 80, "host_port": 80, "protocol": "tcp"}]),
    }
    uncounted = {"last_seen": "2027-01-01T00:00:00.000Z", "sample_time": "x", "newrelic_url": "y", "stopped_at": "z"}
    assert target_groups([{**record, **uncounted}]) == target_groups([record]) != []
