from __future__ import annotations

from email.message import Message
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from server import metrics
from server.state import state
from tests.server import samples
from tests.server.samples import API_ID, AUTH, MIGRATE_ID, SIDECAR_ID


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples_: dict, name: str, **labels: str) -> float:
    return samples_.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_reports_and_store_calls(client, report):
    # The registry is the process's: compare before and after rather than against zero.
    before = scrape(client)
    report(samples.container(), events=[samples.event("e-1")])
    assert client.post("/report/map", data="not json", headers=AUTH).status_code == 400
    assert client.post("/report/event", json={"events": []}).status_code in (401, 403)
    for _ in range(3):
        assert client.get(f"/query/container_id/{API_ID}/_all").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    query_route = "/query/container_id/<container_id>/_all"
    assert delta("ecs_id_mapper_requests_total", route=query_route, status="200") == 3
    assert delta("ecs_id_mapper_requests_total", route="/report/map", status="200") == 1
    assert delta("ecs_id_mapper_requests_total", route="/report/map", status="400") == 1
    assert delta("ecs_id_mapper_requests_total", route="unmatched", status="404") == 1
    assert delta("ecs_id_mapper_request_duration_seconds_count", route=query_route) == 3
    assert delta("ecs_id_mapper_reports_total", kind="map", outcome="accepted") == 1
    assert delta("ecs_id_mapper_reports_total", kind="map", outcome="rejected") == 1
    assert delta("ecs_id_mapper_reports_total", kind="event", outcome="rejected") == 1
    assert delta("ecs_id_mapper_events_stored_total") == 1
    assert delta("ecs_id_mapper_store_duration_seconds_count", operation="record_report") == 1
    assert delta("ecs_id_mapper_store_duration_seconds_count", operation="get_container") >= 3


def test_the_query_route_template_is_its_rule_not_the_path(client):
    client.get(f"/query/container_id/{API_ID}/_all")
    text = client.get("/metrics").get_data(as_text=True)
    assert API_ID not in text  # IDs would make one series per container


def test_store_errors_are_counted_by_operation():
    from server.store import StoreUnavailable

    class Failing:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise StoreUnavailable("down")

            return fail

    def errors() -> float:
        return metrics.REGISTRY.get_sample_value("ecs_id_mapper_store_errors_total", {"operation": "ping"}) or 0.0

    store = metrics.MeteredStore(Failing())
    before = errors()
    try:
        store.ping()
    except StoreUnavailable:
        pass
    else:
        raise AssertionError("the error must pass through")
    assert errors() == before + 1


def test_metrics_need_the_read_token_when_one_is_set(make_app, settings):
    client = make_app({**settings, "read_token": "read-secret"}).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer read-secret"}).status_code == 200
    assert client.get("/metrics", headers=AUTH).status_code == 200  # the report token works for reads too


def containers_on_record(client) -> float | None:
    return scrape(client).get((metrics.ContainersOnRecord.NAME, ()))


def test_the_containers_on_record_gauge_reads_the_store(client, report):
    assert containers_on_record(client) == 0
    report(samples.container(), samples.container(SIDECAR_ID, name="sidecar"))
    state(client.application).containers_on_record.interval = 0  # ask the store at every scrape
    assert containers_on_record(client) == 2
    report(samples.container(), samples.container(MIGRATE_ID, name="migrate"))  # one new, one known
    assert containers_on_record(client) == 3


class CountingStore:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = 0

    def count_containers(self):
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def gauge_values(gauge: metrics.ContainersOnRecord) -> list[float]:
    return [sample.value for family in gauge.collect() for sample in family.samples]


def test_the_store_is_asked_at_most_once_per_interval_and_a_failure_leaves_the_gauge_out():
    from server.store import StoreUnavailable

    now = [0.0]
    store = CountingStore(7, StoreUnavailable("down"), None, 9)
    gauge = metrics.ContainersOnRecord(store, interval=15.0, clock=lambda: now[0])
    assert gauge_values(gauge) == [7]
    now[0] = 14.0
    assert gauge_values(gauge) == [7]  # scraped again within the interval: the count it has
    assert store.asked == 1
    now[0] = 15.0
    assert gauge_values(gauge) == []  # the store failed: no figure rather than a stale one
    now[0] = 20.0
    assert gauge_values(gauge) == [] and store.asked == 2  # and it is not asked again before the interval
    now[0] = 30.0
    assert gauge_values(gauge) == []  # a store that cannot count cheaply says None
    now[0] = 45.0
    assert gauge_values(gauge) == [9]


def reported_running(client) -> dict[str, float]:
    found = scrape(client)
    return {status: found.get((metrics.RunningOnRecord.NAME, (("status", status),))) for status in ("running", "lost")}


def test_the_reported_running_gauge_splits_running_from_lost(make_app, settings):
    app = make_app(settings)
    client = app.test_client()
    state(app).running_on_record.interval = 0
    assert reported_running(client) == {"running": 0, "lost": 0}
    client.post("/report/map", json=samples.map_report(samples.container()), headers=AUTH)
    client.post("/report/map", json=samples.map_report(samples.container(SIDECAR_ID, name="sidecar")), headers=AUTH)
    assert reported_running(client) == {"running": 2, "lost": 0}

    # The host's last renewal is long past: both containers are lost, and nothing was written to say so.
    from server import liveness

    state(app).leases.read = lambda: {liveness.host_key(samples.HOST): "2026-01-01T00:00:00.000Z"}
    state(app).leases.interval = 0
    old = [{**r, "last_seen": "2026-01-01T00:00:00.000Z"} for r in state(app).store.running_containers()]
    state(app).running_on_record.store = type("Old", (), {"running_containers": lambda self: old})()
    assert reported_running(client) == {"running": 0, "lost": 2}


def test_the_reported_running_gauge_reads_the_store_once_per_interval_and_leaves_a_failure_out():
    from server import liveness
    from server.store import StoreUnavailable

    now = [0.0]
    answers: list = [[{"known_status": "RUNNING"}], StoreUnavailable("down")]

    class Store:
        def running_containers(self):
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    gauge = metrics.RunningOnRecord(Store(), liveness.Leases(dict, 540), interval=60, clock=lambda: now[0])
    assert gauge.counts() == {"running": 1, "lost": 0}
    now[0] = 59.0
    assert gauge.counts() == {"running": 1, "lost": 0}
    now[0] = 60.0
    assert gauge.counts() is None and gauge_values(gauge) == []


def test_docs_list_every_metric_the_server_serves(client, report):
    report(samples.container())  # a gauge read from the store is served once there is a store to read
    docs = (Path(__file__).parents[2] / "docs" / "metrics.md").read_text()
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
        if not family.name.endswith("_created")  # prometheus-client's own, outside the multiprocess mode
    }
    assert metrics.ContainersOnRecord.NAME in served
    assert {name for name in served if f"`{name}`" not in docs} == set()


def test_the_content_type_is_one_valid_media_type(client):
    # Prometheus parses the header with Go's mime.ParseMediaType, which refuses a parameter given twice.
    header = client.get("/metrics").headers["Content-Type"]
    parsed = Message()
    parsed["Content-Type"] = header
    names = [name for name, _ in parsed.get_params()[1:]]
    assert parsed.get_content_type() == "text/plain"
    assert sorted(names) == ["charset", "version"], header
    assert parsed.get_param("charset") == "utf-8"
