"""What the search box understood: one pasted string read as a container ID, a task, a Docker name, a host, a
service or an address, or why it is none of them (pure: no store, no request)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from server import ids

#: A task ARN in either form: ``…:task/ID`` (old) or ``…:task/CLUSTER/ID`` (long).
TASK_ARN = re.compile(
    r"arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:task/(?:(?P<cluster>[A-Za-z0-9_-]{1,255})/)?(?P<id>[0-9a-fA-F-]{32,36})"
)
#: The name the ECS agent gives a container in Docker: ``ecs-FAMILY-REVISION-NAME-HEX``. A family and a container
#: name may hold dashes: the family ends at the first all-digit segment, the name at the last one.
DOCKER_NAME = re.compile(
    r"/?ecs-(?P<family>[A-Za-z0-9_-]+?)-(?P<revision>[0-9]+)-(?P<name>[A-Za-z0-9_-]+)-(?P<suffix>[0-9a-f]{8,})"
)
#: An EC2 instance ID: ``i-`` and 8 (older) or 17 hex digits.
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
#: ECS cluster and service names: letters, digits, hyphens and underscores, at most 255.
ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
HEX = re.compile(r"[0-9a-f]+")
#: The longest input read at all: a task ARN with a long cluster name fits well within it.
MAX_INPUT = 512


@dataclass(frozen=True)
class Understood:
    """What the input was read as. ``kind`` is one of the names below; ``value`` the canonical form to look up;
    ``said`` what the page tells the person it understood; ``problem`` why nothing can match (malformed)."""

    kind: str
    value: str = ""
    said: str = ""
    problem: str = ""
    #: For a service: the cluster name (may be empty for a bare name).
    extra: dict[str, str] = field(default_factory=dict)


EMPTY = "empty"
CONTAINER_ID = "container_id"
CONTAINER_PREFIX = "container_prefix"
RUNTIME_ID = "runtime_id"
TASK_ID = "task_id"
TASK_ID_OR_PREFIX = "task_id_or_prefix"
TASK_ARN_KIND = "task_arn"
DOCKER_NAME_KIND = "docker_name"
INSTANCE = "instance_id"
SERVICE = "service"
NAME = "name"
ADDRESS = "address"
MALFORMED = "malformed"


def classify(raw: str) -> Understood:
    """Read ``raw`` (whatever was pasted) as the first kind of identifier it can be."""
    text = raw.strip().strip("\"'`")  # pasted from logs and JSON: surrounding quotes and spaces are not the ID
    if not text:
        return Understood(EMPTY)
    if len(text) > MAX_INPUT:
        return Understood(MALFORMED, problem=f"the input is {len(text)} characters long; no ID is that long")
    lower = text.lower()
    for reader in (_container, _task, _docker_name, _instance, _address, _service):
        found = reader(text, lower)
        if found is not None:
            return found
    return Understood(MALFORMED, problem=_why_not(text, lower))


def _container(text: str, lower: str) -> Understood | None:
    if ids.CONTAINER_ID.fullmatch(lower):
        return Understood(CONTAINER_ID, lower, "a full Docker container ID")
    if ids.RUNTIME_ID.fullmatch(lower):
        return Understood(RUNTIME_ID, lower, "a Fargate runtime ID (a task ID, a dash and 10 digits)")
    if re.fullmatch(r"[0-9a-f]{32}-[0-9]{1,9}", lower):
        return Understood(CONTAINER_PREFIX, lower, "the start of a Fargate runtime ID")
    if HEX.fullmatch(lower) and len(lower) == 32:
        # A long-form task ID and the first 32 hex of a container ID look alike: the task is asked first.
        return Understood(TASK_ID_OR_PREFIX, lower, "a task ID (32 hex digits), else the start of a container ID")
    if HEX.fullmatch(lower) and ids.SHORT_ID_LENGTH <= len(lower) < 64:
        what = "a short container ID" if len(lower) == ids.SHORT_ID_LENGTH else "the start of a container ID"
        return Understood(CONTAINER_PREFIX, lower, f"{what} ({len(lower)} hex digits)")
    return None


def _task(text: str, lower: str) -> Understood | None:
    arn = TASK_ARN.fullmatch(text)
    if arn:
        task_id = arn["id"].lower()
        if not ids.TASK_ID.fullmatch(task_id):
            return Understood(MALFORMED, problem=f"the task ARN's last part {arn['id']!r} is no task ID")
        form = "the long form, with its cluster" if arn["cluster"] else "the old form, without a cluster"
        return Understood(TASK_ARN_KIND, task_id, f"a task ARN ({form})", extra={"cluster": arn["cluster"] or ""})
    if ids.TASK_ID.fullmatch(lower):
        return Understood(TASK_ID, lower, "a task ID (a UUID, as older tasks have)")
    return None


def _docker_name(text: str, lower: str) -> Understood | None:
    name = DOCKER_NAME.fullmatch(text)
    if not name:
        return None
    parts = {"family": name["family"], "revision": name["revision"], "container_name": name["name"]}
    said = (
        f"a Docker name given by ECS: task family {name['family']}, revision {name['revision']}, "
        f"container {name['name']}"
    )
    return Understood(DOCKER_NAME_KIND, text.lstrip("/"), said, extra=parts)


def _instance(text: str, lower: str) -> Understood | None:
    if INSTANCE_ID.fullmatch(lower):
        return Understood(INSTANCE, lower, "an EC2 instance ID")
    return None


#: An address with a port, as flow logs and connection errors pair them: ``10.0.1.5:8080``, ``[2600:1f18::a]:443``.
ADDRESS_AND_PORT = re.compile(r"(?P<address>[0-9.]+|\[[0-9a-f:.]+\]):(?P<port>[0-9]{1,5})")


def _address(text: str, lower: str) -> Understood | None:
    with_port = ADDRESS_AND_PORT.fullmatch(lower)
    if with_port and 0 < int(with_port["port"]) <= 65535:
        found = _address(text, with_port["address"])
        if found is not None:
            port = str(int(with_port["port"]))
            return Understood(ADDRESS, found.value, f"{found.said} and port {port}", extra={"port": port})
    candidate = lower[1:-1] if lower.startswith("[") and lower.endswith("]") else lower
    if not any(c in candidate for c in ".:"):
        return None
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ``::ffff:10.0.1.5`` is how dual-stack sockets write 10.0.1.5
    return Understood(ADDRESS, str(address), f"an IPv{address.version} address")


def _service(text: str, lower: str) -> Understood | None:
    if text.startswith("service:") and ECS_NAME.fullmatch(text[8:]):
        # How ECS writes a service's tasks' group; the cluster is not in it.
        return Understood(NAME, text[8:], "a service (as a task's group names it)", extra={"only": "service"})
    cluster, slash, service = text.partition("/")
    if slash and ECS_NAME.fullmatch(cluster) and ECS_NAME.fullmatch(service):
        return Understood(SERVICE, service, f"service {service} of cluster {cluster}", extra={"cluster": cluster})
    if ECS_NAME.fullmatch(text) and not _looks_like_an_id(lower):
        return Understood(NAME, text, "a cluster or service name")
    return None


def _looks_like_an_id(lower: str) -> bool:
    """Hex with a digit or of an ID's length, or ``i-`` and hex: a mistyped ID rather than a name like ``cafe``."""
    if HEX.fullmatch(lower):
        return len(lower) >= ids.SHORT_ID_LENGTH or any(c.isdigit() for c in lower)
    return lower.startswith("i-") and bool(HEX.fullmatch(lower[2:]))


def _why_not(text: str, lower: str) -> str:
    if HEX.fullmatch(lower):
        if len(lower) < ids.SHORT_ID_LENGTH:
            return f"{len(lower)} hex digits is too short for a container ID: give at least {ids.SHORT_ID_LENGTH}"
        return f"{len(lower)} hex digits is too long: a Docker container ID has 64"
    if lower.startswith("arn:"):
        return "an ARN, but not a task's: expected arn:aws:ecs:REGION:ACCOUNT:task/[CLUSTER/]ID"
    if lower.startswith("i-"):
        return "an instance ID has i- and 8 or 17 hex digits"
    if lower.startswith("ecs-"):
        return "a Docker name from ECS reads ecs-FAMILY-REVISION-NAME-HEX"
    return (
        "not a container ID (12 to 64 hex digits), Fargate runtime ID, task ID or ARN, Docker name, "
        "instance ID, IP address, nor a cluster or service name (letters, digits, - and _)"
    )
