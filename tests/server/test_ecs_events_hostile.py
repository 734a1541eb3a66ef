"""``POST /report/ecs-events`` against bodies from outside: each hostile body is a 400 that stores nothing, and a
property test mutating real events finds no 5xx, no refused body that wrote, and no accepted body the OpenAPI
document forbids."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.openapi import document
from server.state import state
from tests.server import samples
from tests.server.documents import validator
from tests.server.ecs_samples import (
    API_RUNTIME_ID,
    HOSTILE,
    binding,
    container,
    ec2_event,
    eni,
    fargate_lifecycle,
)
from tests.server.samples import AUTH

WRITES = ("record_report", "upsert_containers", "add_events", "update_container", "update_task", "update_tasks")


class Writes:
    """Counts the store's writes: a refused body must make none."""

    def __init__(self, store, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[str] = []
        for name in WRITES:
            original = getattr(store, name)
            monkeypatch.setattr(store, name, self._counting(name, original))

    def _counting(self, name, original):
        def write(*args, **kwargs):
            self.calls.append(name)
            return original(*args, **kwargs)

        return write


@pytest.fixture
def writes(app, monkeypatch) -> Writes:
    return Writes(state(app).store, monkeypatch)


def post_raw(client, data: bytes | str):
    return client.post("/report/ecs-events", data=data, headers={**AUTH, "Content-Type": "application/json"})


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_body_is_a_400_that_stores_nothing(client, report, writes, body):
    report(samples.container())  # something on record, which nothing below may change
    writes.calls.clear()
    for sent in (body, [fargate_lifecycle()[0], body]):  # alone, and after a good event in one list
        response = client.post("/report/ecs-events", json=sent, headers=AUTH)
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["error"] == "bad_request"
        assert response.get_json()["message"].startswith("$")
    assert writes.calls == []
    assert client.get(f"/query/container_id/{API_RUNTIME_ID}").status_code == 404


def raw(event: dict, unmapped_value: str) -> str:
    """``event`` as JSON text with ``unmapped_value`` (JSON text, written as is) in a field nothing reads."""
    text = json.dumps(event)
    return text[:-1] + f', "x-unmapped": {unmapped_value}}}'


RAW = {
    "a lone surrogate in an unmapped field": raw(fargate_lifecycle()[2], '"\\ud800"'),
    "a lone surrogate in a key": raw(fargate_lifecycle()[2], '{"\\udfff": 1}'),
    "a lone surrogate deep in an unmapped list": raw(fargate_lifecycle()[2], '[[[{"a": ["\\udbff x"]}]]]'),
    "NaN": raw(fargate_lifecycle()[2], "NaN"),
    "Infinity": raw(fargate_lifecycle()[2], "[-Infinity]"),
    "bytes that are not UTF-8": raw(fargate_lifecycle()[2], '"caf\xe9"').encode("latin-1"),
    "a version of 4,300 digits": json.dumps(fargate_lifecycle()[2]).replace('"version": 3', '"version": ' + "9" * 4300),
    "a version of 10^30": json.dumps(fargate_lifecycle()[2]).replace('"version": 3', '"version": 1' + "0" * 30),
}


@pytest.mark.parametrize("data", RAW.values(), ids=RAW.keys())
def test_a_body_that_is_not_json_as_rfc_8259_has_it_is_a_400_that_stores_nothing(client, writes, data):
    response = post_raw(client, data)
    assert response.status_code == 400, response.get_json()
    assert writes.calls == []


def test_the_good_version_of_each_raw_body_is_taken(client):
    # So that what the bodies above are refused for is the one thing they change.
    assert post_raw(client, raw(fargate_lifecycle()[2], '"\\u00e9\\ud83d\\ude00"')).status_code == 200
    assert post_raw(client, raw(fargate_lifecycle()[2], "[1.5e300]")).status_code == 200


# The property: mutated real events ----------------------------------------------------------------------------------


VALIDATOR = validator(document(), "EcsEvents")

#: What the server refuses that the document says in words only (a JSON Schema cannot say it).
IN_WORDS = re.compile(
    "is on record as a container of task|names a container another|is named twice|is a container of task|"
    "is not the task's taskArn|longer than 1024 bytes|time out of range"
)


def seeds() -> list[dict]:
    bridge = [container("api", "RUNNING", samples.SIDECAR_ID, exitCode=0, networkBindings=[binding(80, 32768)])]
    running = fargate_lifecycle()[2]
    running["detail"]["attachments"] = eni(("privateIPv4Address", "10.20.3.41"), ("privateIPv6Address", "fd00::7"))
    running["detail"]["containers"][0]["networkInterfaces"] = [{"privateIpv4Address": "10.20.3.41"}]
    return [*fargate_lifecycle(), running, ec2_event(3, "RUNNING", bridge)]


def paths(value: Any, here: tuple = ()) -> list[tuple]:
    """Every place in ``value``: each key of an object and each index of a list, nested."""
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(paths(item, (*here, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(paths(item, (*here, index)))
    return found


#: What people tried from outside, and the shapes near what is valid.
NASTY_TEXT = [
    "",
    " ",
    "RUNNING",
    "running",
    "STOPPED",
    "999.1.1.1\nlocalhost",
    "10.0.0.1/24",
    "0x7f.1",
    "fe80::1%\r\nX-Evil: 1",
    "10.0.0.1",
    "::1",
    "service:../../x",
    "service:api",
    "family:api",
    "arn:aws:ecs:eu-central-1:210987654321:cluster/web",
    "2026-11-20T08:01:24.6Z",
    "2999-01-01T00:00:00Z",
    "1999-01-01T00:00:00Z",
    "2026-11-20",
    "sha256:" + "a" * 64,
    samples.API_ID,
    API_RUNTIME_ID,
    API_RUNTIME_ID.upper(),
    "\x00",
    "é" * 600,
    "x" * 1025,
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(NASTY_TEXT),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


@st.composite
def mutated_events(draw) -> Any:
    event = copy.deepcopy(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 3))):
        *parents, last = draw(st.sampled_from(paths(event)[1:] or [("x",)]))
        target = event
        for key in parents:
            target = target[key]
        if draw(st.booleans()) and isinstance(target, dict):
            target.pop(last, None)
        else:
            target[last] = draw(json_values)
    return event if draw(st.integers(0, 4)) else [fargate_lifecycle()[0], event]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=mutated_events())
def test_mutated_events_never_fail_the_server_a_refusal_writes_nothing_and_the_document_agrees(client, writes, body):
    writes.calls.clear()
    response = client.post("/report/ecs-events", json=body, headers=AUTH)
    answer = response.get_json()
    assert response.status_code in (200, 400), answer
    documented = VALIDATOR.is_valid(body)
    if response.status_code == 400:
        assert answer["error"] == "bad_request"
        assert writes.calls == [], answer
        assert not documented or IN_WORDS.search(answer["message"]), answer["message"]
    else:
        assert documented, next(iter(VALIDATOR.iter_errors(body))).message
