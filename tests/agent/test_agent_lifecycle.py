"""Whole container lifecycles through `Agent.poll_once`, one scripted poll after another."""

from __future__ import annotations

from tests.agent.fakes import (
    INSTANCE,
    METADATA,
    container,
    container_id,
    long_arn,
    old_arn,
    task,
    tasks,
)

A = container_id(1)
B = container_id(2)


def test_a_task_from_pending_to_vanished_reports_each_step_once(make_agent, script, reports, clock):
    agent = make_agent()
    arn = long_arn(1)
    script.imds()
    script.poll(tasks(task(arn, "PENDING", container(1, Ports=None, StartedAt=None))))
    script.report()
    script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.report()
    script.poll(tasks(task(arn, "RUNNING", container(1))))  # nothing changed: nothing sent
    script.poll(tasks(task(arn, "STOPPED", container(1), desired="STOPPED")))
    script.report()
    script.poll(tasks())
    script.report()
    for _ in range(5):
        agent.poll_once()
        clock.advance(5)

    assert reports.events == [
        (A, "appeared", "", "PENDING"),
        (A, "known_status", "PENDING", "RUNNING"),
        (A, "desired_status", "RUNNING", "STOPPED"),
        (A, "known_status", "RUNNING", "STOPPED"),
        (A, "vanished", "STOPPED", ""),
    ]
    first, running, stopped, vanished = reports.bodies
    assert first["full"] is True
    assert first["host"] == {
        "instance_id": INSTANCE["meta-data/instance-id"],
        "instance_ip": INSTANCE["meta-data/local-ipv4"],
        "instance_type": INSTANCE["meta-data/instance-type"],
        "instance_az": INSTANCE["meta-data/placement/availability-zone"],
        "region": INSTANCE["meta-data/placement/region"],
        "cluster_name": "default",
        "container_instance_arn": METADATA["ContainerInstanceArn"],
        "ecs_agent_version": METADATA["Version"],
        "host_name": first["host"]["host_name"],
    }
    assert first["containers"][0]["ports"] == []
    assert running["full"] is False
    assert running["containers"][0]["ports"] == [{"container_port": 8000, "host_port": 49001, "protocol": "tcp"}]
    assert "instance_port" not in running["containers"][0]  # the server takes it from `ports`
    assert running["containers"][0]["started_at"] == "2026-11-20T08:12:04.001Z"
    assert stopped["containers"][0]["known_status"] == "STOPPED"
    assert vanished["containers"] == []  # its last state was already reported
    assert len(set(reports.event_ids)) == 5


def test_two_tasks_starting_in_one_poll_arrive_in_one_report(make_agent, script, reports):
    agent = make_agent()
    script.imds()
    script.poll(tasks())
    script.report()
    script.poll(tasks(task(long_arn(1), "PENDING", container(1)), task(long_arn(2), "PENDING", container(2))))
    script.report()
    agent.poll_once()
    agent.poll_once()

    empty, both = reports.bodies
    assert empty == {**empty, "containers": [], "events": [], "full": True}
    assert both["full"] is False
    assert {c["task_id"] for c in both["containers"]} == {long_arn(1)[-32:], long_arn(2)[-32:]}
    assert sorted(reports.events) == sorted([(A, "appeared", "", "PENDING"), (B, "appeared", "", "PENDING")])


def test_multi_container_task_in_any_order_is_one_snapshot(make_agent, script, reports):
    agent = make_agent()
    arn = long_arn(3)
    web, sidecar = container(1, name="web"), container(2, name="envoy", Ports=[])
    script.imds()
    script.poll(tasks(task(arn, "RUNNING", web, sidecar)))
    script.report()
    script.poll(tasks(task(arn, "RUNNING", sidecar, web)))  # the ECS agent's order is not stable
    script.poll(tasks(task(arn, "STOPPED", sidecar, web)))
    script.report()
    for _ in range(3):
        agent.poll_once()

    first = reports.bodies[0]
    assert {c["container_name"]: c["task_id"] for c in first["containers"]} == {
        "web": arn[-32:],
        "envoy": arn[-32:],
    }
    assert reports.statuses() == {A: ("RUNNING", "STOPPED"), B: ("RUNNING", "STOPPED")}
    assert sorted(e[:2] for e in reports.events[2:]) == [(A, "known_status"), (B, "known_status")]


def test_both_arn_forms_give_their_task_ids(make_agent, script, reports):
    agent = make_agent()
    script.imds()
    script.poll(tasks(task(old_arn(1), "RUNNING", container(1)), task(long_arn(2), "RUNNING", container(2))))
    script.report()
    agent.poll_once()

    by_container = {c["container_id"]: c for c in reports.bodies[0]["containers"]}
    assert by_container[A]["task_arn"] == old_arn(1)
    assert by_container[A]["task_id"] == old_arn(1).rsplit("/", 1)[1]
    assert len(by_container[A]["task_id"]) == 36
    assert by_container[B]["task_id"] == long_arn(2).rsplit("/", 1)[1]
    assert len(by_container[B]["task_id"]) == 32


def test_old_agent_without_image_ports_or_desired_status(make_agent, script, reports):
    agent = make_agent()
    old = {"DockerId": container_id(1), "DockerName": "ecs-migrate-3-migrate-e0a1", "Name": "migrate"}
    script.imds()
    script.poll(
        tasks(task(old_arn(1), "RUNNING", old, desired=None)),
        metadata={"Cluster": "default", "ContainerInstanceArn": None, "Version": "Amazon ECS Agent - v1.0.0"},
    )
    script.report()
    agent.poll_once()

    (record,) = reports.bodies[0]["containers"]
    assert record["desired_status"] == ""
    assert record["known_status"] == "RUNNING"
    assert (record["image"], record["ports"], record["networks"]) == ("", [], [])
    assert reports.bodies[0]["host"]["container_instance_arn"] == ""


def test_awsvpc_task_reports_networks_and_its_own_ports(make_agent, script, reports):
    agent = make_agent()
    awsvpc = container(
        1,
        Ports=[{"ContainerPort": 9200, "Protocol": "tcp"}],
        Networks=[{"NetworkMode": "awsvpc", "IPv4Addresses": ["172.31.9.44"]}],
    )
    script.imds()
    script.poll(tasks(task(long_arn(1), "RUNNING", awsvpc)))
    script.report()
    agent.poll_once()

    (record,) = reports.bodies[0]["containers"]
    assert record["ports"] == [{"container_port": 9200, "host_port": 9200, "protocol": "tcp"}]
    assert record["networks"] == [{"network_mode": "awsvpc", "ipv4_addresses": ["172.31.9.44"], "ipv6_addresses": []}]


def test_container_without_docker_id_yet_is_reported_once_it_has_one(make_agent, script, reports):
    agent = make_agent()
    arn = long_arn(1)
    script.imds()
    script.poll(tasks(task(arn, "PENDING", container(1, DockerId=None)), task(long_arn(2), "PENDING")))
    script.report()
    script.poll(tasks(task(arn, "PENDING", container(1))))
    script.report()
    agent.poll_once()
    agent.poll_once()

    assert reports.bodies[0]["containers"] == []
    assert reports.events == [(A, "appeared", "", "PENDING")]


def test_resync_resends_the_whole_snapshot_without_events(make_agent, script, reports, clock):
    agent = make_agent(resync_interval=600, keepalive_interval=600)
    payload = tasks(task(long_arn(1), "RUNNING", container(1)), task(long_arn(2), "STOPPED", container(2)))
    script.imds()
    script.poll(payload)
    script.report()
    script.poll(payload)
    script.metadata_due = True  # a resync reads the host fields again
    script.poll(payload)
    script.report()
    agent.poll_once()
    clock.advance(599)
    agent.poll_once()
    clock.advance(1)
    agent.poll_once()

    resync = reports.bodies[1]
    assert resync["full"] is True
    assert resync["events"] == []
    assert {c["container_id"] for c in resync["containers"]} == {A, B}
    assert [c["sample_time"] for c in resync["containers"]] == [clock.now()] * 2


def test_instance_arn_known_later_resends_every_record(make_agent, script, reports):
    agent = make_agent()
    payload = tasks(task(long_arn(1), "RUNNING", container(1)))
    script.imds()
    script.poll(payload, metadata={**METADATA, "ContainerInstanceArn": None})
    script.report()
    script.poll(payload)
    script.report()
    agent.poll_once()
    agent.poll_once()

    assert reports.bodies[1]["full"] is True
    assert reports.bodies[1]["host"]["container_instance_arn"] == METADATA["ContainerInstanceArn"]
    assert [c["container_id"] for c in reports.bodies[1]["containers"]] == [A]


def test_a_quiet_host_sends_an_empty_report_each_keepalive_interval(make_agent, script, reports, clock):
    agent = make_agent(keepalive_interval=60)
    arn = long_arn(1)
    script.imds()
    script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.report()
    for _ in range(11):  # 55 s of polls with nothing new: nothing sent
        script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.poll(tasks(task(arn, "RUNNING", container(1))))
    script.report()  # 60 s after the last report: the keep-alive
    for _ in range(13):
        agent.poll_once()
        clock.advance(5)

    first, keepalive = reports.bodies
    assert first["full"] is True
    assert (keepalive["containers"], keepalive["events"], keepalive["full"]) == ([], [], False)
    assert keepalive["host"] == first["host"]
