from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from server import metrics
from tests.server import samples
from tests.server.samples import API_ID, AUTH


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
