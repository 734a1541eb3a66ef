"""The EC2 instance behind each container instance the ECS events name: once per container instance for every
replica, batched, throttled, retried, written only where no agent's values are; and through the app against moto's
ECS and EC2, an agentless EC2 task on bridge networking from the feed as a target at its instance's address."""

from __future__ import annotations

import json
import time

import boto3
from moto import mock_aws

from server import liveness
from server.container_instances import ContainerInstances, cluster_of, note_key
from server.ecs import EcsNotConfigured, EcsUnavailable
from server.state import state
from tests.server import ecs_samples, samples
from tests.server.ecs_samples import binding, container, ec2_event
from tests.server.samples import AUTH, TOKEN
from tests.upstream.helpers import REGION
from tests.upstream.test_task_definitions import Notes

NOW = "2026-11-20T08:02:00.000Z"
PREFIX = f"arn:aws:ecs:{REGION}:210987654321:container-instance/default/"


def instance_arn(n: int) -> str:
    return f"{PREFIX}{n:032x}"


def ec2_id(n: int) -> str:
    return f"i-{n:017x}"


class FakeAws:
    """DescribeContainerInstances and DescribeInstances answered from ``instances`` (ARN → EC2 instance ID) and
    ``addresses`` (EC2 instance ID → address); every call kept, ``failing`` raised by the next ECS calls."""

    def __init__(self, count: int = 3):
        self.instances = {instance_arn(n): ec2_id(n) for n in range(count)}
        self.addresses = {ec2_id(n): f"10.0.0.{n + 10}" for n in range(count)}
        self.ecs_calls: list[tuple[str, list[str]]] = []
        self.ec2_calls: list[list[str]] = []
        self.failing: Exception | None = None

    def describe_container_instances(self, cluster: str, arns: list[str]) -> tuple[list[dict], list[dict]]:
        self.ecs_calls.append((cluster, list(arns)))
        if self.failing is not None:
            raise self.failing
        found = [{"containerInstanceArn": a, "ec2InstanceId": self.instances[a]} for a in arns if a in self.instances]
        return found, [{"arn": a, "reason": "MISSING"} for a in arns if a not in self.instances]

    def private_addresses(self, instance_ids: list[str]) -> dict[str, str]:
        self.ec2_calls.append(list(instance_ids))
        return {i: self.addresses[i] for i in instance_ids if i in self.addresses}


def feed_record(n: int, instance: int = 0, **fields: str) -> dict:
    """A record the feed stored for container ``n`` of a bridge task on container instance ``instance``."""
    return {
        "container_id": f"{n:064x}", "container_name": "api", "task_id": f"{n:032x}",
        "task_arn": f"arn:aws:ecs:{REGION}:210987654321:task/default/{n:032x}", "cluster_name": "default",
        "container_instance_arn": instance_arn(instance), "known_status": "RUNNING", "sample_time": NOW,
        "state_version": "3", "ports": json.dumps([{"container_port": 80, "host_port": 32768 + n, "protocol": "tcp"}]),
        **fields,
    }  # fmt: skip


def stored(store, *records: dict) -> list[dict]:
    return store.upsert_containers([dict(r) for r in records], NOW)


def address(store, record: dict) -> tuple[str, str, str]:
    found = store.get_container(record["container_id"])
    return found.get("instance_ip", ""), found.get("ec2_instance_id", ""), found.get("instance_id", "")


def workers(fake, store, clock, notes=None, **options) -> ContainerInstances:
    return ContainerInstances(fake, fake, store, notes=notes, clock=clock, autostart=False, **options)


def test_the_records_of_a_container_instance_get_its_address_and_stay_off_the_agents_leases(store, clock):
    fake = FakeAws()
    instances = workers(fake, store, clock, notes=Notes())
    records = [feed_record(1, 0), feed_record(2, 0), feed_record(3, 1)]
    assert instances.submit(stored(store, *records)) == 3
    assert instances.run_once() == 3
    assert [address(store, r) for r in records] == [
        ("10.0.0.10", ec2_id(0), ""), ("10.0.0.10", ec2_id(0), ""), ("10.0.0.11", ec2_id(1), ""),
    ]  # fmt: skip
    # One round for the cluster's instances: one DescribeContainerInstances, one DescribeInstances.
    assert fake.ecs_calls == [("default", [instance_arn(0), instance_arn(1)])]
    assert fake.ec2_calls == [[ec2_id(0), ec2_id(1)]]
    # The instance ID is not the agent's field: the feed's record is not kept alive (nor lost) by a host's lease.
    assert liveness.host_key(store.get_container(records[0]["container_id"])) == ""


def test_once_known_an_address_is_added_before_the_record_is_stored(store, clock):
    fake = FakeAws()
    instances = workers(fake, store, clock)
    unknown = feed_record(4, 2)
    assert instances.enrich([unknown]) == [unknown]  # queued to learn, the record as it came
    instances.run_once()
    assert len(fake.ecs_calls) == 1
    (enriched,) = instances.enrich([feed_record(5, 2)])
    assert (enriched["instance_ip"], enriched["ec2_instance_id"]) == ("10.0.0.12", ec2_id(2))
    assert "instance_id" not in enriched


def test_one_round_per_container_instance_for_every_replica(store, clock):
    fake, notes = FakeAws(), Notes()
    one, other = workers(fake, store, clock, notes=notes), workers(fake, store, clock, notes=notes)
    first, second = feed_record(1, 0), feed_record(2, 0)
    one.submit(stored(store, first))
    one.run_once()
    other.submit(stored(store, second))
    other.run_once()  # the replica finds the note the first left
    assert len(fake.ecs_calls) == len(fake.ec2_calls) == 1 and notes.puts == [note_key(instance_arn(0))]
    assert address(store, second) == ("10.0.0.10", ec2_id(0), "")


def test_an_agents_values_are_never_overwritten(store, clock):
    fake = FakeAws()
    instances = workers(fake, store, clock)
    agents = feed_record(1, 0, instance_id="i-0agent0000000000", instance_ip="192.0.2.7", host_name="ip-192-0-2-7")
    assert instances.submit(stored(store, agents)) == 0
    assert instances.enrich([agents]) == [agents]
    # The feed's record, taken by an agent after the feed queued it: the agent's values stay.
    late = feed_record(2, 0)
    instances.submit(stored(store, late))
    store.update_container(late["container_id"], {"instance_ip": "192.0.2.8", "instance_id": "i-0agent0000000001"})
    instances.run_once()
    assert address(store, late) == ("192.0.2.8", "", "i-0agent0000000001")
    # And ``stored``, the record on file, says so before any call.
    on_file = {late["container_id"]: store.get_container(late["container_id"])}
    assert instances.enrich([feed_record(2, 0)], on_file) == [feed_record(2, 0)]


def test_rounds_are_throttled_and_a_failure_is_retried_with_backoff(store, clock):
    fake = FakeAws()
    fake.failing = EcsUnavailable("ECS is throttling requests", retry_after=5)
    instances = workers(fake, store, clock, min_interval=1.0)
    other_cluster = feed_record(9, 0, cluster_name="other", container_instance_arn=f"{PREFIX[:-8]}other/{0:032x}")
    assert cluster_of(other_cluster["container_instance_arn"], other_cluster) == "other"
    first = feed_record(1, 0)
    instances.submit(stored(store, first, other_cluster))
    instances.run_once()
    assert [c for c, _ in fake.ecs_calls] == ["default"]  # one round per interval
    instances.run_once()
    assert len(fake.ecs_calls) == 1
    clock.advance(1.0)
    instances.run_once()
    assert [c for c, _ in fake.ecs_calls] == ["default", "other"]
    fake.failing = None
    clock.advance(1.0)
    instances.run_once()
    assert len(fake.ecs_calls) == 2  # the failed ones wait out their backoff
    clock.advance(60.0)
    instances.run_once()
    clock.advance(1.0)
    instances.run_once()
    assert len(fake.ecs_calls) == 4 and instances.waiting() == 0
    assert address(store, first) == ("10.0.0.10", ec2_id(0), "")


def test_a_container_instance_ecs_does_not_have_is_noted_and_not_asked_again(store, clock):
    fake, notes = FakeAws(), Notes()
    instances = workers(fake, store, clock, notes=notes)
    gone = feed_record(1, 7)
    instances.submit(stored(store, gone))
    instances.run_once()
    assert address(store, gone) == ("", "", "") and fake.ec2_calls == []
    clock.advance(5.0)
    instances.submit([gone])
    instances.run_once()
    assert len(fake.ecs_calls) == 1 and len(notes.puts) == 1


def test_without_aws_configuration_it_stops_asking_until_it_changes(store, clock):
    configuration = ["none"]
    fake = FakeAws()
    fake.failing = EcsNotConfigured("no AWS region for the ECS API")
    instances = workers(fake, store, clock, aws_configuration=lambda: configuration[0])
    record = feed_record(1, 0)
    instances.submit(stored(store, record))
    instances.run_once()
    assert instances.submit([record]) == 0 and instances.waiting() == 0
    configuration[0] = "a region now"
    fake.failing = None
    assert instances.submit([record]) == 1
    clock.advance(1.0)
    instances.run_once()
    assert address(store, record) == ("10.0.0.10", ec2_id(0), "")


# Through the app, against moto's ECS and EC2 -----------------------------------------------------------------------


def test_an_agentless_ec2_task_from_the_feed_becomes_a_target_at_its_instances_address(make_app, tmp_path):
    with mock_aws():
        ec2, ecs = boto3.client("ec2", region_name=REGION), boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName="default")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
        document = json.dumps({"instanceId": instance["InstanceId"], "region": REGION})
        registered = ecs.register_container_instance(cluster="default", instanceIdentityDocument=document)
        arn = registered["containerInstance"]["containerInstanceArn"]
        app = make_app({"store": f"sqlite:///{tmp_path}/m.sqlite3", "token": TOKEN, "service_names": False,
                        "task_definitions": False})  # fmt: skip
        client = app.test_client()
        bindings = [binding(80, 32768), binding(80, 32768, "::")]
        event = ec2_event(3, "RUNNING", [container("api", "RUNNING", samples.API_ID, networkBindings=bindings)])
        event["detail"]["containerInstanceArn"] = arn
        assert client.post("/report/ecs-events", json=event, headers=AUTH).status_code == 200
        worker = state(app).container_instances
        deadline = time.monotonic() + 10
        while client.get("/sd/prometheus").get_json() == [] and time.monotonic() < deadline:
            worker.wait_idle(1.0)
        (group,) = client.get("/sd/prometheus").get_json()
        assert group["targets"] == [f"{instance['PrivateIpAddress']}:32768"]
        assert group["labels"]["__meta_ecs_ec2_instance_id"] == instance["InstanceId"]
        record = client.get(f"/query/container_id/{samples.API_ID}/_all").get_json()
        assert (record["instance_ip"], record["ec2_instance_id"]) == (
            instance["PrivateIpAddress"],
            instance["InstanceId"],
        )
        assert not record.get("instance_id") and worker.calls == 1
        # A later event of the task is stored with the address already known: no call, no write after.
        event = ec2_event(4, "RUNNING", [container("api", "RUNNING", samples.API_ID, networkBindings=bindings)])
        event["detail"]["containerInstanceArn"] = arn
        assert client.post("/report/ecs-events", json=event, headers=AUTH).status_code == 200
        assert worker.waiting() == 0 and worker.calls == 1
        assert ecs_samples.EC2_TASK in record["task_arn"]


def test_an_external_instance_has_no_ec2_instance_to_ask_about(store, clock):
    fake = FakeAws()
    fake.instances[instance_arn(0)] = "mi-0123456789abcdef0"  # ECS Anywhere: an SSM managed instance
    instances = workers(fake, store, clock)
    record = feed_record(1, 0)
    instances.submit(stored(store, record))
    instances.run_once()
    assert fake.ec2_calls == [] and address(store, record) == ("", "", "") and instances.waiting() == 0
