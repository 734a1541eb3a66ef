"""Prometheus HTTP service discovery: the answer built from records, checked against the documented format and
run through the relabel example of docs/prometheus.md as Prometheus would."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from server import liveness, records
from server.discovery import FilterError, Filters, docker_labels, label_name, labels, target_groups, targets
from server.state import state
from tests.relabel import relabel, scraped_targets
from tests.server import samples

PROMETHEUS_DOC = Path(__file__).resolve().parents[2] / "docs" / "prometheus.md"

#: A target: host name, IPv4 address or bracketed IPv6 address, and a port.
HOST_PORT = r"^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):\d+$"
#: Prometheus's HTTP SD format: a list of target groups, each a list of "host:port" strings and string labels.
HTTP_SD_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["targets"],
        "additionalProperties": False,
        "properties": {
            "targets": {"type": "array", "items": {"type": "string", "pattern": HOST_PORT}},
            "labels": {
                "type": "object",
                "propertyNames": {"pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                "additionalProperties": {"type": "string"},
            },
        },
    },
}

TASK_ID = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
ARN = f"arn:aws:ecs:eu-west-1:123456789012:task/prod/{TASK_ID}"


def container(n: int, **fields: object) -> dict[str, str]:
    """A running bridge-networked container on an EC2 host, in the stored (flat, JSON-in-text) shape."""
    record = {
        "container_id": f"{n:064x}",
        "container_name": "app",
        "task_id": TASK_ID,
        "task_arn": ARN,
        "task_name": "api",
        "task_version": "7",
        "cluster_name": "prod",
        "service_name": "api",
        "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api:1.4",
        "instance_ip": "10.0.1.17",
        "instance_id": "i-0abc",
        "instance_az": "eu-west-1a",
        "region": "eu-west-1",
        "desired_status": "RUNNING",
        "known_status": "RUNNING",
        "ports": [{"container_port": 9090, "host_port": 32768, "protocol": "tcp"}],
        "networks": [],
    }
    record.update(fields)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in record.items()}


AWSVPC = [{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.2.5"], "ipv6_addresses": []}]


# Targets


def test_bridge_publishes_the_host_port_on_the_instance():
    assert targets(container(1)) == ["10.0.1.17:32768"]


def test_awsvpc_publishes_the_container_port_on_the_task_address():
    record = container(1, networks=AWSVPC, ports=[{"container_port": 9090, "host_port": 9090, "protocol": "tcp"}])
    assert targets(record) == ["10.0.2.5:9090"]


def test_host_networking_publishes_the_same_port_on_the_instance():
    record = container(1, ports=[{"container_port": 9100, "host_port": 9100, "protocol": "tcp"}])
    assert targets(record) == ["10.0.1.17:9100"]


def test_an_ipv6_only_task_address_is_bracketed():
    networks = [{"network_mode": "awsvpc", "ipv4_addresses": [], "ipv6_addresses": ["2001:db8::5"]}]
    assert targets(container(1, networks=networks)) == ["[2001:db8::5]:9090"]


def test_udp_unmapped_and_malformed_ports_are_no_targets():
    ports = [
        {"container_port": 53, "host_port": 53, "protocol": "udp"},
        {"container_port": 8080, "host_port": 0, "protocol": "tcp"},
        {"container_port": 8081, "host_port": "x", "protocol": "tcp"},
        "junk",
        {"container_port": 9090, "host_port": 32768, "protocol": "tcp"},
        {"container_port": 9091, "host_port": 32769},
    ]
    assert targets(container(1, ports=ports)) == ["10.0.1.17:32768", "10.0.1.17:32769"]


def test_the_port_filter_is_the_container_port():
    ports = [
        {"container_port": 80, "host_port": 32770, "protocol": "tcp"},
        {"container_port": 9090, "host_port": 32771, "protocol": "tcp"},
    ]
    assert targets(container(1, ports=ports), 9090) == ["10.0.1.17:32771"]


@pytest.mark.parametrize(
    "fields",
    [{"ports": []}, {"known_status": "STOPPED"}, {"known_status": "PENDING"}, {"instance_ip": ""}, {"ports": "{bad"}],
    ids=["no-ports", "stopped", "pending", "no-address", "unreadable-ports"],
)
def test_a_container_without_a_target_has_no_group(fields):
    record = container(1)
    record.update(fields)
    assert target_groups([record]) == []


# Labels


def test_labels_follow_prometheus_ecs_discovery():
    shown = labels(container(1, networks=AWSVPC))

    assert shown == {
        "__meta_ecs_cluster": "prod",
        "__meta_ecs_service": "api",
        "__meta_ecs_task_id": TASK_ID,
        "__meta_ecs_task_arn": ARN,
        "__meta_ecs_task_family": "api",
        "__meta_ecs_task_version": "7",
        "__meta_ecs_container_name": "app",
        "__meta_ecs_container_id": f"{1:064x}",
        "__meta_ecs_image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api:1.4",
        "__meta_ecs_availability_zone": "eu-west-1a",
        "__meta_ecs_region": "eu-west-1",
        "__meta_ecs_ec2_instance_id": "i-0abc",
        "__meta_ecs_desired_status": "RUNNING",
        "__meta_ecs_last_status": "RUNNING",
        "__meta_ecs_ip_address": "10.0.2.5",
        "__meta_ecs_network_mode": "awsvpc",
        "__meta_ecs_launch_type": "EC2",
    }


def test_unknown_values_are_left_out_and_a_known_launch_type_kept():
    shown = labels(container(1, service_name="", instance_id="", image="", launch_type="FARGATE"))

    assert "__meta_ecs_service" not in shown and "__meta_ecs_image" not in shown
    assert shown["__meta_ecs_launch_type"] == "FARGATE"
    assert labels(container(2, instance_id="")).get("__meta_ecs_launch_type") is None


def test_docker_labels_become_sanitised_container_labels():
    given = {"PROMETHEUS_EXPORTER_PORT": "9090", "com.example/team-name": "payments", "ünïcode": "x", "9lives": "y"}
    shown = labels(container(1, docker_labels=given))

    assert {k: v for k, v in shown.items() if k.startswith("__meta_ecs_container_label_")} == {
        "__meta_ecs_container_label_PROMETHEUS_EXPORTER_PORT": "9090",
        "__meta_ecs_container_label_com_example_team_name": "payments",
        "__meta_ecs_container_label__n_code": "x",
        "__meta_ecs_container_label_9lives": "y",
    }
    assert label_name("a.b-c d/é") == "a_b_c_d__"


def test_names_that_sanitise_alike_keep_the_first_by_name_whatever_their_order():
    one = container(1, docker_labels='{"team.name": "b", "team-name": "a"}')
    other = container(1, docker_labels='{"team-name": "a", "team.name": "b"}')
    assert docker_labels(one) == docker_labels(other) == {"__meta_ecs_container_label_team_name": "a"}


@pytest.mark.parametrize("text", ["", "{bad", "[]", '"x"', '{"": "v", "n": 1, "m": null, "k": ["v"]}'])
def test_unreadable_or_odd_docker_labels_give_no_labels(text):
    assert docker_labels(container(1, docker_labels=text)) == {}


# One group per port


def port_labels(group: dict) -> tuple[str | None, str | None]:
    return group["labels"].get("__meta_ecs_container_port"), group["labels"].get("__meta_ecs_host_port")


def test_each_port_of_a_container_is_a_group_of_its_own():
    ports = [
        {"container_port": 9090, "host_port": 32771, "protocol": "tcp"},
        {"container_port": 80, "host_port": 32770, "protocol": "tcp"},
        {"container_port": 80, "host_port": 32770, "protocol": "tcp"},  # bound on IPv4 and IPv6: one target
    ]
    answer = target_groups([container(1, ports=ports)])

    assert [(g["targets"], port_labels(g)) for g in answer] == [
        (["10.0.1.17:32770"], ("80", "32770")),
        (["10.0.1.17:32771"], ("9090", "32771")),
    ]
    assert answer[0]["labels"] != answer[1]["labels"]  # no two targets write the same series
    assert answer[0]["labels"]["__meta_ecs_container_id"] == answer[1]["labels"]["__meta_ecs_container_id"]


def test_one_container_port_published_on_two_host_ports_is_two_groups():
    ports = [
        {"container_port": 9090, "host_port": 32771, "protocol": "tcp"},
        {"container_port": 9090, "host_port": 32772, "protocol": "tcp"},
    ]
    answer = target_groups([container(1, ports=ports)])
    assert [(g["targets"], port_labels(g)) for g in answer] == [
        (["10.0.1.17:32771"], ("9090", "32771")),
        (["10.0.1.17:32772"], ("9090", "32772")),
    ]


def test_awsvpc_has_no_host_port_label():
    record = container(1, networks=AWSVPC, ports=[{"container_port": 9090, "host_port": 9090, "protocol": "tcp"}])
    ((group),) = target_groups([record])
    assert (group["targets"], port_labels(group)) == (["10.0.2.5:9090"], ("9090", None))


def test_the_port_filter_leaves_the_other_ports_groups_out():
    ports = [
        {"container_port": 80, "host_port": 32770, "protocol": "tcp"},
        {"container_port": 9090, "host_port": 32771, "protocol": "tcp"},
    ]
    (group,) = target_groups([container(1, ports=ports)], Filters(port=9090))
    assert port_labels(group) == ("9090", "32771")


# Lost containers


def test_a_lost_container_is_no_target_and_a_renewed_host_brings_it_back():
    record = container(1, last_seen="2026-12-01T10:00:00.000Z", container_instance_arn="", host_name="")
    key = liveness.host_key(record)
    lapsed = liveness.annotate([record], {key: "2026-12-01T10:00:00.000Z"}, 540, "2026-12-01T10:09:00.000Z")
    renewed = liveness.annotate([record], {key: "2026-12-01T10:08:00.000Z"}, 540, "2026-12-01T10:09:00.000Z")

    assert "lost_since" in lapsed[0]
    assert target_groups(lapsed) == []
    assert [g["targets"] for g in target_groups(renewed)] == [["10.0.1.17:32768"]]


# The whole answer


def fleet() -> list[dict[str, str]]:
    other_task = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    return [
        container(3, container_name="worker", service_name="worker", task_name="worker"),
        container(1),
        container(2, container_name="sidecar", ports=[{"container_port": 9100, "host_port": 32800, "protocol": "tcp"}]),
        container(4, task_id=other_task, task_arn=ARN.replace(TASK_ID, other_task), networks=AWSVPC),
        container(5, cluster_name="staging", known_status="STOPPED"),
        container(6, cluster_name="staging"),
    ]


def test_answer_is_valid_http_sd_and_ordered():
    answer = target_groups(fleet())

    jsonschema.validate(answer, HTTP_SD_SCHEMA)
    assert [(g["labels"]["__meta_ecs_cluster"], g["targets"]) for g in answer] == [
        ("prod", ["10.0.1.17:32768"]),
        ("prod", ["10.0.1.17:32800"]),
        ("prod", ["10.0.2.5:9090"]),
        ("prod", ["10.0.1.17:32768"]),
        ("staging", ["10.0.1.17:32768"]),
    ]
    assert [g["labels"]["__meta_ecs_container_name"] for g in answer[:2]] == ["app", "sidecar"]


def test_an_empty_record_answers_an_empty_list():
    assert target_groups([]) == []
    jsonschema.validate([], HTTP_SD_SCHEMA)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(cluster="staging"), [f"{6:064x}"]),
        (Filters(service="worker"), [f"{3:064x}"]),
        (Filters(container_name="sidecar"), [f"{2:064x}"]),
        (Filters(port=9100), [f"{2:064x}"]),
        (Filters(cluster="prod", service="api", port=9090), [f"{1:064x}", f"{4:064x}"]),
        (Filters(cluster="nowhere"), []),
    ],
)
def test_filters(filters, expected):
    answer = target_groups(fleet(), filters)
    assert [g["labels"]["__meta_ecs_container_id"] for g in answer] == expected


def test_filters_from_the_query_string():
    assert Filters.parse({}) == Filters()
    parsed = Filters.parse({"cluster": ["prod"], "service": ["api"], "port": ["9090"], "container_name": ["app_1"]})
    assert parsed == Filters("prod", "api", 9090, "app_1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"port": ["http"]}, "port 'http' is malformed"),
        ({"port": ["0"]}, "port '0' is malformed"),
        ({"port": ["65536"]}, "port '65536'"),
        ({"port": ["٩٠"]}, "port"),
        ({"cluster": ["a b"]}, "cluster 'a b' is malformed"),
        ({"service": [""]}, "service '' is malformed"),
        ({"container_name": ["x" * 256]}, "container_name"),
        ({"cluster": ["a", "b"]}, "cluster: give it once"),
        ({"clusters": ["prod"]}, "unknown filter clusters; the filters are cluster, service, port, container_name"),
    ],
)
def test_bad_filters_say_what_is_wrong(args, message):
    with pytest.raises(FilterError, match=re.escape(message)):
        Filters.parse(args)


# As Prometheus sees it: the documented scrape config, relabelled


def documented_scrape_configs() -> dict[str, dict]:
    """The ``scrape_configs`` entries docs/prometheus.md gives, by job name."""
    blocks = re.findall(r"```yaml\n(.*?)```", PROMETHEUS_DOC.read_text(), re.S)
    (stanza,) = [yaml.safe_load(b) for b in blocks if "http_sd_configs" in b]
    return {job["job_name"]: job for job in stanza["scrape_configs"]}


def documented_scrape_config(name: str = "ecs") -> dict:
    return documented_scrape_configs()[name]


def test_documented_scrape_config_points_at_the_route_with_the_read_token():
    jobs = documented_scrape_configs()
    assert set(jobs) == {"ecs", "ecs-exporters", "ecs-id-mapper"}
    for name in ("ecs", "ecs-exporters"):
        (sd,) = jobs[name]["http_sd_configs"]
        assert "/sd/prometheus" in sd["url"]
        assert sd.get("refresh_interval", "60s") == "60s"
        # Prometheus 2.x drops the scheme of http_sd_configs credentials unless the type is written out.
        assert sd["authorization"]["type"] == "Bearer" and sd["authorization"]["credentials_file"]
    server = jobs["ecs-id-mapper"]
    assert server["authorization"]["type"] == "Bearer" and server["authorization"]["credentials_file"]
    assert server.get("metrics_path", "/metrics") == "/metrics"


def test_documented_relabel_example_keeps_and_renames_as_it_says():
    job = documented_scrape_config()
    (sd,) = job["http_sd_configs"]
    port = int(re.search(r"port=(\d+)", sd["url"]).group(1))
    answer = target_groups(fleet(), Filters(port=port))

    scraped = scraped_targets(answer, job)

    assert scraped == [
        {
            "job": job["job_name"],
            "instance": f"{TASK_ID}/app",
            "cluster": "prod",
            "service": "api",
            "container_id": f"{1:064x}",
            "availability_zone": "eu-west-1a",
        },
        {
            "job": job["job_name"],
            "instance": "9f8e7d6c5b4a39281706f5e4d3c2b1a0/app",
            "cluster": "prod",
            "service": "api",
            "container_id": f"{4:064x}",
            "availability_zone": "eu-west-1a",
        },
        {
            "job": job["job_name"],
            "instance": f"{TASK_ID}/app",
            "cluster": "staging",
            "service": "api",
            "container_id": f"{6:064x}",
            "availability_zone": "eu-west-1a",
        },
    ]


def test_documented_label_convention_scrapes_the_port_path_and_job_the_container_names():
    job = documented_scrape_config("ecs-exporters")
    two_ports = [
        {"container_port": 8080, "host_port": 32780, "protocol": "tcp"},
        {"container_port": 9113, "host_port": 32781, "protocol": "tcp"},
    ]
    records = [
        container(1, ports=two_ports, docker_labels={"PROMETHEUS_EXPORTER_PORT": "9113"}),
        container(
            2,
            container_name="exporter",
            docker_labels={
                "PROMETHEUS_EXPORTER_PORT": "9090",
                "PROMETHEUS_EXPORTER_PATH": "/internal/metrics",
                "PROMETHEUS_EXPORTER_JOB_NAME": "payments",
            },
        ),
        container(3, container_name="quiet"),  # names no port: not scraped
        container(4, container_name="wrong", docker_labels={"PROMETHEUS_EXPORTER_PORT": "1234"}),
    ]
    answer = target_groups(records)
    found = []
    for group in answer:  # the scrape URL's parts, which scraped_targets drops with the other __ labels
        kept = relabel(
            {
                "job": job["job_name"],
                "__metrics_path__": "/metrics",
                **group["labels"],
                "__address__": group["targets"][0],
            },
            job["relabel_configs"],
        )
        if kept is not None:
            found.append((kept["job"], kept["__address__"], kept["__metrics_path__"], kept["instance"]))

    assert found == [
        (job["job_name"], "10.0.1.17:32781", "/metrics", f"{TASK_ID}/app"),
        ("payments", "10.0.1.17:32768", "/internal/metrics", f"{TASK_ID}/exporter"),
    ]
    assert {t["cluster"] for t in scraped_targets(answer, job)} == {"prod"}


def test_relabel_semantics_used_by_the_example():
    labels_ = {"__meta_ecs_service": "api", "__meta_ecs_task_id": "t1", "__meta_ecs_container_name": "app"}
    assert relabel(labels_, [{"source_labels": ["__meta_ecs_service"], "regex": "web", "action": "keep"}]) is None
    assert relabel(labels_, [{"source_labels": ["__meta_ecs_service"], "regex": "api", "action": "drop"}]) is None
    joined = relabel(
        labels_,
        [{"source_labels": ["__meta_ecs_task_id", "__meta_ecs_container_name"], "separator": "/", "target_label": "x"}],
    )
    assert joined["x"] == "t1/app"
    partial = relabel(labels_, [{"source_labels": ["__meta_ecs_service"], "regex": "ap", "target_label": "y"}])
    assert "y" not in partial  # anchored: "ap" does not match "api"
    mapped = relabel(labels_, [{"regex": "__meta_ecs_(.+)_name", "action": "labelmap", "replacement": "ecs_${1}"}])
    assert mapped["ecs_container"] == "app"
    same = [{"source_labels": ["__meta_ecs_task_id"], "target_label": "other", "action": "keepequal"}]
    assert relabel({**labels_, "other": "t1"}, same) is not None
    assert relabel({**labels_, "other": "t2"}, same) is None
    assert relabel(labels_, [{**same[0], "action": "dropequal"}]) is not None


# Through the route


def test_the_route_answers_json_for_what_agents_reported(client, report):
    empty = client.get("/sd/prometheus")
    assert (empty.status_code, empty.mimetype, empty.get_json()) == (200, "application/json", [])
    awsvpc = [{"network_mode": "awsvpc", "ipv4_addresses": ["10.0.2.5"], "ipv6_addresses": []}]
    report(
        samples.container(),
        samples.container(samples.SIDECAR_ID, "sidecar", ports=[], networks=awsvpc),
        samples.container(samples.MIGRATE_ID, "migrate", known_status="STOPPED"),
    )

    answer = client.get("/sd/prometheus")

    assert answer.status_code == 200 and answer.mimetype == "application/json"
    groups = answer.get_json()
    jsonschema.validate(groups, HTTP_SD_SCHEMA)
    assert [(g["targets"], g["labels"]["__meta_ecs_container_id"]) for g in groups] == [
        (["10.0.1.17:49153"], samples.API_ID)
    ]
    assert groups[0]["labels"]["__meta_ecs_cluster"] == "default"
    assert client.get("/sd/prometheus?port=8000&cluster=default").get_json() == groups
    assert client.get("/sd/prometheus?port=8001").get_json() == []


@pytest.mark.parametrize(
    "query", ["port=http", "cluster=no%20spaces", "cluster=a&cluster=b", "clusters=default", "port="]
)
def test_a_bad_filter_is_a_400_json_error(client, query):
    answer = client.get(f"/sd/prometheus?{query}")

    assert answer.status_code == 400
    assert answer.get_json()["error"] == "bad_request"
    assert answer.get_json()["message"]


def test_one_store_query_per_request(app, client, monkeypatch):
    store = state(app).store
    calls = []
    for name in ("running_containers", "get_container", "find_containers", "containers_of_task"):
        original = getattr(store, name)
        monkeypatch.setattr(store, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))

    client.get("/sd/prometheus?service=api")

    assert calls == ["running_containers"]


def test_the_route_leaves_out_containers_whose_host_stopped_reporting(make_app, settings):
    lapsing = make_app({**settings, "host_lease": "0.05"})
    client = lapsing.test_client()
    client.post("/report/map", json=samples.map_report(samples.container()), headers=samples.AUTH)
    state(lapsing).leases.interval = 0  # read the leases at every request
    time.sleep(0.1)

    assert client.get("/sd/prometheus").get_json() == []
    shown = client.get(f"/query/container_id/{samples.API_ID}/_all").get_json()
    assert shown["known_status"] == "RUNNING"  # what was last reported stays
    assert shown["lost_reason"].startswith("its host stopped reporting: lease last renewed ")
    assert shown["lost_since"] <= records.utc_now()


def test_the_route_reads_the_leases_the_store_keeps(make_app, settings):
    app = make_app({**settings, "host_lease": "60"})
    client = app.test_client()
    state(app).leases.interval = 0  # read the leases at every request
    # A container last seen long ago on a host the store holds no lease for: lost, by its last sighting.
    host = {"instance_id": samples.HOST["instance_id"], "host_name": samples.HOST["host_name"]}
    state(app).store.upsert_containers([container(1, **host)], "2026-01-01T00:00:00.000Z")
    assert client.get("/sd/prometheus").get_json() == []

    # Its host reports (nothing new, an empty report): the lease the store now keeps brings it back.
    client.post("/report/map", json=samples.map_report(), headers=samples.AUTH)
    assert [g["targets"] for g in client.get("/sd/prometheus").get_json()] == [["10.0.1.17:32768"]]
