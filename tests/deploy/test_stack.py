"""deploy/cloudformation.yaml: cfn-lint clean, deployed to moto's CloudFormation, and its server task role holding
exactly the AWS operations the server's code calls, as recorded while the server runs against moto."""

from __future__ import annotations

import ast
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore
import botocore.session
import pytest
from moto import mock_aws
from moto.core.utils import pascal_to_camelcase, remap_nested_keys
from moto.ecs import models as moto_ecs

from server import create_app
from server.feed import Feed
from server.retention import Pruner
from server.state import state
from tests.deploy.dockerfile import Dockerfile
from tests.server import ecs_samples, samples
from tests.support import ROOT, eventually
from tests.upstream import helpers

TEMPLATE = ROOT / "deploy" / "cloudformation.yaml"
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
REGION = helpers.REGION
STACK = "mapper"
TOKEN = "stack-token"
DOMAIN = "mapper.internal.example.com"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# moto's CloudFormation makes no queue or bucket policies; the template's are checked as written, below.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Tried to parse AWS..SQS..QueuePolicy"),
    pytest.mark.filterwarnings(r"ignore:Tried to parse AWS..S3..BucketPolicy"),
    pytest.mark.filterwarnings(r"ignore:Tried to parse AWS..CloudFormation..WaitConditionHandle"),  # no-op in AWS too
]


@pytest.fixture(autouse=True)
def ecs_is_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    for service in ("ECS", "EC2"):
        monkeypatch.delenv(f"AWS_ENDPOINT_URL_{service}")  # the suite's closed port: here ECS and EC2 are moto's


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    """cfn-lint failing on any finding, informational ones included."""
    return subprocess.run(
        [CFN_LINT, "--include-checks", "I", "--", str(path)], capture_output=True, text=True, timeout=120
    )


def test_template_lints_clean():
    result = cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_fails_on_a_finding(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("HealthCheckPath: /health", "HealthCheckPath: 17\n      Bogus: 1"))
    result = cfn_lint(broken)
    assert result.returncode != 0
    assert "Bogus" in result.stdout


# What the server calls ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def recording_operations() -> Iterator[set[str]]:
    """Every call boto3 clients made inside the block, as IAM actions (``sdb:GetAttributes``)."""
    called: set[str] = set()

    def record(model: Any, **_: Any) -> None:
        called.add(f"{model.service_model.signing_name}:{model.name}")

    make_client = boto3.session.Session.client

    def client(self: boto3.session.Session, *args: Any, **kwargs: Any) -> Any:
        made = make_client(self, *args, **kwargs)
        made.meta.events.register("before-call", record)
        return made

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(boto3.session.Session, "client", client)
        yield called


def server_operations(store_url: str, task_arn: str) -> set[str]:
    """The operations the server called while it took reports, answered every kind of query and pruned expired
    containers, on a store and on ECS in moto, with a fresh account (so a SimpleDB store creates its domains)."""
    ecs = boto3.client("ecs", region_name=helpers.REGION)
    (instance,) = ecs.list_container_instances(cluster=helpers.CLUSTER)["containerInstanceArns"]
    with recording_operations() as called:
        drive(store_url, helpers.CLUSTER, task_arn, instance)
    return set(called)


def drive(store_url: str, cluster: str, task_arn: str, container_instance: str) -> None:
    """Reports (agents' and ECS events of an agentless task on ``container_instance``) and every kind of query, as
    agents, ECS and users send them, then a retention prune."""
    container_id, task_id = samples.API_ID, task_arn.rsplit("/", 1)[1]
    app = create_app({"store": store_url, "token": TOKEN})
    client = app.test_client()
    containers = [samples.container(task_arn=task_arn), samples.container(samples.SIDECAR_ID, "log", task_arn=task_arn)]
    body = samples.map_report(*containers, events=[samples.event("e-1", task_id=task_id)])
    body["host"]["cluster_name"] = cluster
    assert client.post("/report/map", json=body, headers=AUTH).status_code == 200
    events = {"events": [samples.event("e-2", task_id=task_id)]}
    assert client.post("/report/event", json=events, headers=AUTH).status_code == 200
    eventually(
        lambda: client.get(f"/query/container_id/{container_id}/_all").get_json().get("service_name") == "web",
        "the service-name worker to describe the task",
    )
    eventually(lambda: state(app).task_definitions.calls > 0, "the task-definition worker to describe its definition")
    # An EC2 task of the cluster known only from ECS's events: the address of its container instance is learnt.
    bindings = [ecs_samples.binding(80, 32768)]
    agentless = ecs_samples.container("api", "RUNNING", "ab" * 32, networkBindings=bindings)
    event = ecs_samples.ec2_event(3, "RUNNING", [agentless])
    event["detail"]["containerInstanceArn"] = container_instance  # of the cluster, which the policy's condition names
    assert client.post("/report/ecs-events", json=event, headers=AUTH).status_code == 200
    eventually(
        lambda: client.get(f"/query/container_id/{'ab' * 32}/_all").get_json().get("instance_ip"),
        "the container-instance worker to learn the instance's address",
    )
    for path in (
        f"/query/container_id/{container_id[:12]}",
        f"/query/container_id/{container_id}/events",
        f"/query/task_id/{task_id}/_all",
        f"/query/task_id/{task_id}/events",
        f"/query/service/{cluster}/web/_all?include_stopped=true",
        "/sd/prometheus",
        "/health",
    ):
        assert client.get(path).status_code == 200, path
    store = state(app).store
    if not store.expires_itself:  # DynamoDB's TTL removes expired items; the other stores prune them
        store.clock = lambda: time.time() + store.retention + 86_400
        assert Pruner(store).run_once() == 3
    state(app).close()


def operations_named_in_code() -> set[str]:
    """The AWS operations the server's source calls, as IAM actions: each module's ``client.METHOD(...)`` and
    ``_call("METHOD", ...)``, in the service of the client the module makes (``new_client("sdb", ...)``)."""
    methods = client_methods()
    found: set[str] = set()
    for path in (ROOT / "server").rglob("*.py"):
        calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]
        services = {
            call.args[0].value
            for call in calls
            if ast.unparse(call.func).endswith("client") and call.args and isinstance(call.args[0], ast.Constant)
        } & set(methods)
        for call in calls:
            if not isinstance(call.func, ast.Attribute):
                continue
            if call.func.attr == "_call" and call.args and isinstance(call.args[0], ast.Constant):
                method = call.args[0].value
            elif ast.unparse(call.func.value).endswith("client"):
                method = call.func.attr
            else:
                continue
            found |= {methods[service][method] for service in services if method in methods[service]}
    return found


def client_methods() -> dict[str, dict[str, str]]:
    """For each service the server uses, its boto3 methods → IAM actions (``"select"`` → ``"sdb:Select"``)."""
    session = botocore.session.get_session()
    methods = {}
    for service in ("sdb", "ecs", "ec2", "dynamodb"):
        model = session.get_service_model(service)
        methods[service] = {botocore.xform_name(op): f"{model.signing_name}:{op}" for op in model.operation_names}
    return methods


#: What the server calls only when its store URL says create=true, which the stack's own table makes unneeded.
CREATING_A_TABLE = {"dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"}


# The stack in moto -----------------------------------------------------------------------------------------------


@pytest.fixture
def moto_ecs_takes_every_property(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's CloudFormation hands RegisterTaskDefinition only Family, ContainerDefinitions, Volumes and Memory, and
    CreateService only Cluster, TaskDefinition and DesiredCount. Hand them every property the template sets, so that
    network mode, roles, scheduling strategy and load balancers reach moto's ECS as CloudFormation would send them."""

    def camel(value: Any) -> Any:
        return remap_nested_keys(value, pascal_to_camelcase) if value is not None else None

    def task_definition(cls: type, name: str, template: dict, account_id: str, region_name: str, **_: Any) -> Any:
        properties = template["Properties"]
        return moto_ecs.ecs_backends[account_id][region_name].register_task_definition(
            family=properties["Family"],
            container_definitions=camel(properties["ContainerDefinitions"]),
            volumes=camel(properties.get("Volumes")),
            network_mode=properties.get("NetworkMode"),
            requires_compatibilities=properties.get("RequiresCompatibilities"),
            task_role_arn=properties.get("TaskRoleArn"),
            execution_role_arn=properties.get("ExecutionRoleArn"),
        )

    def service(cls: type, name: str, template: dict, account_id: str, region_name: str, **_: Any) -> Any:
        properties = template["Properties"]
        task = properties["TaskDefinition"]
        count = properties.get("DesiredCount")
        return moto_ecs.ecs_backends[account_id][region_name].create_service(
            properties["Cluster"],
            name,
            int(count) if count is not None else None,
            task_definition_str=task.arn if isinstance(task, moto_ecs.TaskDefinition) else task,
            load_balancers=camel(properties.get("LoadBalancers")),
            scheduling_strategy=properties.get("SchedulingStrategy"),
            launch_type=properties.get("LaunchType"),
            network_configuration=camel(properties.get("NetworkConfiguration")),
        )

    monkeypatch.setattr(moto_ecs.TaskDefinition, "create_from_cloudformation_json", classmethod(task_definition))
    monkeypatch.setattr(moto_ecs.Service, "create_from_cloudformation_json", classmethod(service))


@pytest.fixture
def account(moto_ecs_takes_every_property) -> Iterator[dict[str, str]]:
    """A moto account with what the stack needs: a VPC with two subnets, the cluster (running one task of service
    ``web``), the token as a secret, a certificate for the server's name. Its stack parameters, but the store's."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"]
            for n, zone in ((1, "a"), (2, "b"))
        ]
        (task_arn,) = helpers.run_tasks(boto3.client("ecs", region_name=REGION), ["service:web"])
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="ecs-id-mapper/token", SecretString=TOKEN
        )["ARN"]
        certificate = boto3.client("acm", region_name=REGION).request_certificate(DomainName=DOMAIN)["CertificateArn"]
        yield {
            "ClusterName": helpers.CLUSTER,
            "VpcId": vpc,
            "Subnets": ",".join(s["SubnetId"] for s in subnets),
            "ClientCidr": "10.0.0.0/16",
            "ServerImage": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/ecs-id-mapper-server:1.0",
            "AgentImage": "123456789012.dkr.ecr.eu-central-1.amazonaws.com/ecs-id-mapper-agent:1.0",
            "TokenArn": secret,
            "DomainName": DOMAIN,
            "CertificateArn": certificate,
            "task_arn": task_arn,
        }


def deploy(account: dict[str, str], **parameters: str) -> dict[str, Any]:
    """The stack created in moto's CloudFormation: its parameters, outputs and resources' physical IDs."""
    parameters = {k: v for k, v in account.items() if k[0].isupper()} | parameters
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName=STACK,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    (stack,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resources = cloudformation.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    return {
        "parameters": parameters,
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]},
        "resources": {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources},
    }


@pytest.fixture
def deployed(account) -> dict[str, Any]:
    return deploy(account, StoreUrl=f"dynamodb://mapper?region={REGION}", CreateTable="true")


def task_definition(family: str) -> dict:
    return boto3.client("ecs", region_name=REGION).describe_task_definition(taskDefinition=family)["taskDefinition"]


def service(name: str) -> dict:
    ecs = boto3.client("ecs", region_name=REGION)
    (found,) = ecs.describe_services(cluster=helpers.CLUSTER, services=[name])["services"]
    return found


def role_policy(role: str) -> list[dict]:
    """The statements of a role's inline policies."""
    iam = boto3.client("iam", region_name=REGION)
    statements = []
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):  # moto keeps what its CloudFormation was given as Python's repr of a dict
            document = ast.literal_eval(document)
        statements += [s for s in document["Statement"] if s is not None]  # moto keeps an AWS::NoValue as None
    return statements


def actions(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_the_agent_is_a_daemon_on_host_networking_with_the_token_from_the_secret(deployed):
    agent = task_definition(f"{STACK}-agent")
    assert agent["networkMode"] == "host"
    (container,) = agent["containerDefinitions"]
    assert container["image"] == deployed["parameters"]["AgentImage"]
    assert container["memoryReservation"] <= 64
    assert container["secrets"] == [{"name": "ECS_ID_MAPPER_TOKEN", "valueFrom": deployed["parameters"]["TokenArn"]}]
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "ECS_ID_MAPPER_SERVER_URL": deployed["outputs"]["Url"]
    }
    assert "TOKEN" not in json.dumps(container["environment"])
    assert container["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/{STACK}/agent"
    assert "taskRoleArn" not in agent  # the agent calls no AWS API

    daemon = service(f"{STACK}-agent")
    assert (daemon["schedulingStrategy"], daemon["launchType"]) == ("DAEMON", "EC2")
    assert daemon["taskDefinition"] == agent["taskDefinitionArn"]


# What each container writes, all on volumes: the server /tmp (gunicorn's heartbeats, the Prometheus multiprocess
# files), the agent its spool. The stack's stores are shared, so the image's SQLite /data is unused, and the feed
# writes nothing.
WRITABLE: dict[str, set[str]] = {"server": {"/tmp"}, "feed": set(), "agent": {"/spool"}}


def test_every_container_has_a_read_only_root_and_volumes_where_it_writes(deployed):
    image_volumes = {"server": Dockerfile.read(ROOT / "Dockerfile.server").volumes,
                     "agent": Dockerfile.read(ROOT / "Dockerfile.agent").volumes}  # fmt: skip
    for family, paths in WRITABLE.items():
        definition = task_definition(f"{STACK}-{family}")
        (container,) = definition["containerDefinitions"]
        assert container.get("readonlyRootFilesystem") is True, family
        mounts = {m["containerPath"]: m["sourceVolume"] for m in container.get("mountPoints", [])}
        assert set(mounts) == paths, family
        assert set(mounts.values()) <= {v["name"] for v in definition.get("volumes", [])}, family
        assert paths <= set(image_volumes["agent" if family == "agent" else "server"]), family


def test_the_server_is_replicated_behind_a_load_balancer_that_checks_health(deployed):
    server = task_definition(f"{STACK}-server")
    (container,) = server["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["ECS_ID_MAPPER_STORE"] == deployed["parameters"]["StoreUrl"]
    assert container["secrets"] == [{"name": "ECS_ID_MAPPER_TOKEN", "valueFrom": deployed["parameters"]["TokenArn"]}]
    assert container["portMappings"][0]["containerPort"] == 5001

    replicated = service(f"{STACK}-server")
    assert (replicated["schedulingStrategy"], replicated["desiredCount"]) == ("REPLICA", 2)
    (balanced,) = replicated["loadBalancers"]
    assert (balanced["containerName"], balanced["containerPort"]) == ("server", 5001)

    elbv2 = boto3.client("elbv2", region_name=REGION)
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[balanced["targetGroupArn"]])["TargetGroups"]
    assert (group["HealthCheckPath"], group["Port"], group["TargetType"]) == ("/health", 5001, "ip")
    (balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    assert deployed["outputs"]["Url"] == f"https://{DOMAIN}"
    assert deployed["outputs"]["LoadBalancerDnsName"] == balancer["DNSName"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    https = next(listener for listener in listeners if listener["Protocol"] == "HTTPS")
    assert https["DefaultActions"][0]["TargetGroupArn"] == group["TargetGroupArn"]


def test_the_load_balancer_speaks_tls_only_and_plain_http_redirects(deployed):
    elbv2 = boto3.client("elbv2", region_name=REGION)
    (balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    listeners = {
        listener["Port"]: listener
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    }
    assert set(listeners) == {443, 80}
    https, http = listeners[443], listeners[80]
    assert (https["Protocol"], https["SslPolicy"]) == ("HTTPS", "ELBSecurityPolicy-TLS13-1-2-2021-06")
    assert [c["CertificateArn"] for c in https["Certificates"]] == [deployed["parameters"]["CertificateArn"]]
    (redirect,) = http["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert (redirect["RedirectConfig"]["Protocol"], redirect["RedirectConfig"]["Port"]) == ("HTTPS", "443")


def test_reports_go_to_a_service_of_their_own_through_a_path_rule(deployed):
    reports = service(f"{STACK}-reports")
    lookups = service(f"{STACK}-server")
    assert (reports["schedulingStrategy"], reports["desiredCount"]) == ("REPLICA", 2)
    assert reports["taskDefinition"] == lookups["taskDefinition"]  # the same server, another pool of tasks
    (balanced,) = reports["loadBalancers"]
    assert balanced["targetGroupArn"] != lookups["loadBalancers"][0]["targetGroupArn"]

    elbv2 = boto3.client("elbv2", region_name=REGION)
    (balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    rules = [r for listener in listeners for r in elbv2.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]]
    (rule,) = [r for r in rules if not r["IsDefault"]]
    assert rule["Conditions"][0]["Field"] == "path-pattern"
    assert rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/report/*"]
    assert rule["Actions"][0]["TargetGroupArn"] == balanced["targetGroupArn"]
    (group,) = elbv2.describe_target_groups(TargetGroupArns=[balanced["targetGroupArn"]])["TargetGroups"]
    assert (group["HealthCheckPath"], group["Port"]) == ("/health", 5001)


def test_ecs_reads_only_the_one_token_secret(deployed):
    role = deployed["resources"]["ExecutionRole"]
    statements = role_policy(role)
    secret_reads = [s for s in statements if "secretsmanager:GetSecretValue" in actions([s])]
    assert [s["Resource"] for s in secret_reads] == [deployed["parameters"]["TokenArn"]]
    assert not any(a.startswith(("sdb:", "ecs:", "dynamodb:")) for a in actions(statements))


def test_the_clusters_agents_report_with_the_clusters_own_token(account):
    """A token per cluster: the agents get the cluster's secret, the server keeps its own, ECS may read just both."""
    agents_token = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"ecs-id-mapper/report/{helpers.CLUSTER}", SecretString="the-clusters-token"
    )["ARN"]
    deployed = deploy(account, StoreUrl=f"dynamodb://mapper?region={REGION}", AgentTokenArn=agents_token)
    (agent,) = task_definition(f"{STACK}-agent")["containerDefinitions"]
    assert agent["secrets"] == [{"name": "ECS_ID_MAPPER_TOKEN", "valueFrom": agents_token}]
    (server,) = task_definition(f"{STACK}-server")["containerDefinitions"]
    assert server["secrets"] == [{"name": "ECS_ID_MAPPER_TOKEN", "valueFrom": account["TokenArn"]}]
    statements = role_policy(deployed["resources"]["ExecutionRole"])
    secret_reads = [s for s in statements if "secretsmanager:GetSecretValue" in actions([s])]
    assert sorted(s["Resource"] for s in secret_reads) == sorted([account["TokenArn"], agents_token])


def test_access_logs_go_to_a_bucket_only_the_load_balancer_writes():
    """The template as written: moto's CloudFormation keeps neither load balancer attributes nor bucket policies."""
    from cfnlint.decode import decode

    template, problems = decode(str(TEMPLATE))
    assert not problems
    resources = template["Resources"]
    attributes = {a["Key"]: a["Value"] for a in resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {
        "Fn::If": ["MakesAccessLogsBucket", {"Ref": "AccessLogBucket"}, {"Ref": "AccessLogsBucket"}]
    }
    allow, deny = resources["AccessLogBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (allow["Principal"], allow["Action"]) == (
        {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}, "s3:PutObject",
    )  # fmt: skip
    assert allow["Resource"] == {"Fn::Sub": "${AccessLogBucket.Arn}/AWSLogs/${AWS::AccountId}/*"}
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    # The load balancer waits for the policy: turning logs on fails while it may not write.
    assert resources["LoadBalancer"]["DependsOn"] == "AccessLogsReady"
    assert resources["AccessLogsReady"]["Metadata"]["BucketPolicy"]["Fn::If"][1] == {"Ref": "AccessLogBucketPolicy"}


def test_what_the_stack_keeps_at_rest_is_encrypted(deployed):
    key = deployed["resources"]["DataKey"]
    kms = boto3.client("kms", region_name=REGION)
    assert kms.get_key_rotation_status(KeyId=key)["KeyRotationEnabled"]
    from cfnlint.decode import decode

    # As written: moto's CloudFormation makes log groups and tables without their key.
    template, _ = decode(str(TEMPLATE))
    groups = [r for r in template["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
    assert len(groups) == 3
    assert all(group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]} for group in groups)
    assert template["Resources"]["Table"]["Properties"]["SSESpecification"] == {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Fn::GetAtt": ["DataKey", "Arn"]},
    }  # fmt: skip
    sqs = boto3.client("sqs", region_name=REGION)
    for queue in ("EventsQueue", "EventsDeadLetterQueue"):
        attributes = sqs.get_queue_attributes(QueueUrl=deployed["resources"][queue], AttributeNames=["All"])
        assert attributes["Attributes"]["SqsManagedSseEnabled"] == "true", queue


@pytest.mark.parametrize(
    ("store_url", "server_store_url"),
    [
        (f"dynamodb://mapper?region={REGION}", f"dynamodb://mapper?region={REGION}"),
        # moto serves SimpleDB in-process only in some regions, such as us-west-2.
        (f"sdb://mapper?region={REGION}", "sdb://mapper?region=us-west-2"),
    ],
    ids=["dynamodb", "sdb"],
)
def test_the_server_task_role_holds_exactly_what_the_server_calls(account, store_url, server_store_url, monkeypatch):
    deploy(account, StoreUrl=store_url, CreateTable="true")
    # On DynamoDB the server runs on the table the stack made, so this also proves the server accepts it.
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)  # the server's ECS client's region, where the tasks run
    called = server_operations(server_store_url, account["task_arn"])
    prefix = store_url.partition(":")[0]
    assert {action.partition(":")[0] for action in called} == {prefix, "ecs", "ec2"}

    named = operations_named_in_code()
    assert {"sdb:Select", "dynamodb:BatchGetItem", "ecs:DescribeTasks", "ec2:DescribeInstances"} <= named
    # The recording saw every operation of this store (and of ECS and EC2) the code names: it is the whole set.
    assert {a for a in named if a.startswith((f"{prefix}:", "ecs:", "ec2:"))} - CREATING_A_TABLE == called

    role = task_definition(f"{STACK}-server")["taskRoleArn"].rsplit("/", 1)[1]
    statements = role_policy(role)
    assert actions(statements) == called
    for statement in statements:
        if any(a.startswith(f"{prefix}:") for a in actions([statement]) - {"sdb:ListDomains"}):  # it takes no resource
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert all(r.endswith((":domain/mapper.*", ":table/mapper", ":table/mapper/index/*")) for r in resources)
    for action in ("ecs:DescribeTasks", "ecs:DescribeContainerInstances"):
        ecs = next(s for s in statements if action in actions([s]))
        assert ecs["Condition"]["ArnEquals"]["ecs:cluster"].endswith(f":cluster/{helpers.CLUSTER}")


# The ECS event feed ------------------------------------------------------------------------------------------------


def cluster_event(cluster_arn: str) -> dict:
    """A Fargate task state change of the cluster ``cluster_arn`` names, as ECS puts it on the default bus."""
    event = ecs_samples.fargate_lifecycle()[3]
    return {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Resources": event["resources"],
        "Detail": json.dumps({**event["detail"], "clusterArn": cluster_arn}),
    }


def test_the_clusters_task_state_changes_reach_the_feeds_queue_and_others_do_not(deployed):
    sqs, events = boto3.client("sqs", region_name=REGION), boto3.client("events", region_name=REGION)
    queue = deployed["resources"]["EventsQueue"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    dead_letters = sqs.get_queue_attributes(QueueUrl=deployed["resources"]["EventsDeadLetterQueue"],
                                            AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # fmt: skip
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dead_letters, "maxReceiveCount": 5}
    cluster = f"arn:aws:ecs:{REGION}:123456789012:cluster/{helpers.CLUSTER}"
    other = f"arn:aws:ecs:{REGION}:123456789012:cluster/elsewhere"
    assert events.put_events(Entries=[cluster_event(cluster), cluster_event(other)])["FailedEntryCount"] == 0
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"])["detail"]["clusterArn"] == cluster

    feed = task_definition(f"{STACK}-feed")
    (container,) = feed["containerDefinitions"]
    assert container["command"] == ["python", "-m", "server.feed"]
    assert container["image"] == deployed["parameters"]["ServerImage"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["ECS_ID_MAPPER_EVENTS_QUEUE_URL"] == queue
    assert environment["ECS_ID_MAPPER_STORE"] == deployed["parameters"]["StoreUrl"]
    assert (service(f"{STACK}-feed")["desiredCount"], "secrets" in container) == (1, False)


def test_only_the_rule_may_send_to_the_queue():
    from cfnlint.decode import decode

    template, problems = decode(str(TEMPLATE))
    assert not problems
    (statement,) = template["Resources"]["EventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Principal"], statement["Action"]) == ({"Service": "events.amazonaws.com"}, "sqs:SendMessage")
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["TaskStateRule", "Arn"]}}}
    targets = template["Resources"]["TaskStateRule"]["Properties"]["Targets"]
    assert [t["Arn"] for t in targets] == [{"Fn::GetAtt": ["EventsQueue", "Arn"]}]


#: IAM authorises a batch call as the single one.
BATCH_ACTIONS = {"sqs:DeleteMessageBatch": "sqs:DeleteMessage"}


def test_the_feed_task_role_holds_what_the_feed_calls(deployed):
    store_url = deployed["parameters"]["StoreUrl"]
    queue = deployed["resources"]["EventsQueue"]
    boto3.client("events", region_name=REGION).put_events(
        Entries=[cluster_event(f"arn:aws:ecs:{REGION}:123456789012:cluster/{helpers.CLUSTER}")]
    )
    with recording_operations() as called:
        from server.store import open_store

        store = open_store(store_url, 30)
        feed = Feed(store, boto3.client("sqs", region_name=REGION), queue, wait_seconds=0)
        assert feed.poll() == 1
        assert store.get_container(ecs_samples.API_RUNTIME_ID)["exit_code"] == "137"
        store.close()
    role = task_definition(f"{STACK}-feed")["taskRoleArn"].rsplit("/", 1)[1]
    granted = actions(role_policy(role))
    feed_calls = {BATCH_ACTIONS.get(a, a) for a in called}
    assert {a for a in granted if a.startswith("sqs:")} == {a for a in feed_calls if a.startswith("sqs:")} == {
        "sqs:ReceiveMessage", "sqs:DeleteMessage",
    }  # fmt: skip
    assert feed_calls <= granted  # its store calls: the server's store policy, which it shares
    # What its workers call for the records it writes, as the server does for the same events (tested above).
    assert {"ecs:DescribeTaskDefinition", "ecs:DescribeContainerInstances", "ec2:DescribeInstances"} <= granted
