"""The checks behind report bodies and ECS events: what each accepts, the path and problem of what it refuses, and
the one 400 answer the web layer gives for any of them."""

from __future__ import annotations

import pytest

from server import validation
from server.errors import ApiError
from server.validation import ValidationError
from tests.server import samples
from tests.server.samples import AUTH


def test_an_error_names_the_path_and_the_problem_and_knows_no_http():
    error = ValidationError("$.containers[0].task_id", "required")
    assert (error.path, error.problem, str(error)) == (
        "$.containers[0].task_id",
        "required",
        "$.containers[0].task_id: required",
    )
    assert not isinstance(error, ApiError)


@pytest.mark.parametrize(
    ("check", "args", "accepted"),
    [
        (validation.text, ("a-b", "$.x"), "a-b"),
        (validation.text, ("é" * 512, "$.x"), "é" * 512),
        (validation.optional_text, ({"k": None}, "k", "$"), ""),
        (validation.optional_text, ({}, "k", "$"), ""),
        (validation.optional_text, ({"k": "v"}, "k", "$"), "v"),
        (validation.required, ({"k": 0}, "k", "$"), 0),
        (validation.json_object, ({"a": 1}, "$"), {"a": 1}),
        (validation.json_list, ([1, 2], "$", 2), [1, 2]),
        (validation.timestamp, ("2024-05-01T12:00:00+02:00", "$.t"), "2024-05-01T10:00:00.000Z"),
    ],
)
def test_each_check_returns_what_it_accepted(check, args, accepted):
    assert check(*args) == accepted


@pytest.mark.parametrize(
    ("check", "args", "message"),
    [
        (validation.text, (1, "$.x"), "$.x: expected a string, got int"),
        (validation.text, ("x" * 1025, "$.x"), "$.x: longer than 1024 bytes"),
        (validation.text, ("é" * 513, "$.x"), "$.x: longer than 1024 bytes"),
        (validation.text, ("a\x00", "$.x"), "$.x: contains a NUL character"),
        (validation.text, ("\ud800", "$.x"), "$.x: is not valid Unicode (a lone surrogate)"),
        (validation.optional_text, ({"k": []}, "k", "$.o"), "$.o.k: expected a string, got list"),
        (validation.required, ({"k": ""}, "k", "$.o"), "$.o.k: required"),
        (validation.required, ({}, "k", "$.o"), "$.o.k: required"),
        (validation.json_object, ([], "$"), "$: expected an object, got list"),
        (validation.json_list, ({}, "$.l", 2), "$.l: expected a list, got dict"),
        (validation.json_list, ([1, 2, 3], "$.l", 2), "$.l: at most 2 entries, got 3"),
        (validation.timestamp, ("noon", "$.t"), "$.t: expected an ISO 8601 time, got 'noon'"),
        (
            validation.timestamp,
            ("1999-12-31T23:59:59Z", "$.t"),
            "$.t: time out of range (before 2000 or unrepresentable): '1999-12-31T23:59:59Z'",
        ),
    ],
)
def test_each_check_names_the_path_of_what_it_refused(check, args, message):
    with pytest.raises(ValidationError) as refused:
        check(*args)
    assert str(refused.value) == message
    assert f"{refused.value.path}: {refused.value.problem}" == message


def test_a_time_far_ahead_is_taken_as_now():
    assert validation.timestamp("2999-01-01T00:00:00Z", "$.t") < "2999"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/report/map", {"containers": "x"}, "$.containers: expected a list, got str"),
        ("/report/event", {"events": [{}]}, "$.events[0].event_id: required"),
        ("/report/ecs-events", {"source": "x"}, "$: not an ECS task state change: source 'x', detail-type None"),
    ],
)
def test_the_web_layer_answers_a_validation_error_with_400_and_the_one_error_shape(client, path, body, message):
    response = client.post(path, json=body, headers=AUTH)
    assert (response.status_code, response.get_json()) == (400, {"error": "bad_request", "message": message})
    assert response.content_type == "application/json"


def test_a_report_that_passes_every_check_is_stored(client):
    response = client.post("/report/map", json=samples.map_report(samples.container()), headers=AUTH)
    assert response.status_code == 200, response.get_json()
