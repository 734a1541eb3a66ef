"""Delivery: what each server answer does to the outbox and to the time of the next attempt."""

from __future__ import annotations

import json
import logging
import random

import pytest
import requests

from agent.backoff import Backoff
from agent.delivery import MAX_ATTEMPTS, Delivery
from agent.outbox import Outbox
from tests.agent.fakes import SERVER, TOKEN, FakeClock, FakeSession, container_id, response

URL = f"{SERVER}/report/map"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server():
    return FakeSession()


@pytest.fixture
def delivery(server, clock):
    return Delivery(server, SERVER, TOKEN, (1, 2), Backoff(1, 300, random.Random(3)), clock)


@pytest.fixture
def outbox():
    box = Outbox()
    box.put([{"container_id": container_id(1), "known_status": "RUNNING"}], [{"event_id": "e1"}])
    return box


def test_an_accepted_report_leaves_the_outbox(delivery, server, outbox):
    seen = []

    def accept(kwargs):
        seen.append(kwargs)
        return response(200, {"containers": 1, "events": 1})

    server.route("POST", URL, accept)
    assert delivery.deliver(outbox, {"host_name": "h"}) is True
    assert not outbox.pending()
    (kwargs,) = seen
    assert kwargs["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert kwargs["timeout"] == (1, 2)
    assert kwargs["allow_redirects"] is False
    assert json.loads(kwargs["data"])["events"] == [{"event_id": "e1"}]


def test_unavailable_server_keeps_everything_and_backs_off(delivery, server, outbox, clock, caplog):
    with caplog.at_level(logging.WARNING, logger="agent"):
        assert delivery.deliver(outbox, {}) is False  # connection refused
        server.route("POST", URL, response(503, "busy", {"Retry-After": "120"}))
        clock.advance(delivery.next_attempt - clock())
        assert delivery.deliver(outbox, {}) is False
    assert len(outbox) == 2
    assert clock() + 120 <= delivery.next_attempt <= clock() + 180  # Retry-After, with jitter
    clock.advance(119)
    assert delivery.deliver(outbox, {}) is True  # not due: no request at all
    assert len(server.calls) == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_throttled_server_is_retried(delivery, server, outbox, clock):
    server.route("POST", URL, response(429, "slow down", {"Retry-After": "7"}))
    delivery.deliver(outbox, {})
    assert clock() + 7 <= delivery.next_attempt <= clock() + 10.5
    assert outbox.pending()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_error_naming_the_variable_and_keeps_the_report(delivery, server, outbox, caplog, status):
    server.route("POST", URL, response(status, {"error": "forbidden"}))
    with caplog.at_level(logging.ERROR, logger="agent"):
        delivery.deliver(outbox, {})
    assert outbox.pending()
    assert "ECS_ID_MAPPER_TOKEN" in caplog.records[0].getMessage()


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_body_the_server_cannot_take_is_dropped_at_once(delivery, server, outbox, caplog, status):
    server.route("POST", URL, response(status, {"error": "bad request"}))
    with caplog.at_level(logging.ERROR, logger="agent"):
        assert delivery.deliver(outbox, {}) is True
    assert not outbox.pending()
    assert "dropping 1 container states and 1 events" in caplog.records[0].getMessage()
    assert delivery.due()


def test_other_client_errors_are_retried_a_few_times_then_dropped(delivery, server, outbox, clock):
    server.route("POST", URL, response(404, "not found"))
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(1000)
        assert delivery.deliver(outbox, {}) is False
        assert outbox.pending()
    clock.advance(1000)
    delivery.deliver(outbox, {})
    assert not outbox.pending()
    assert len(server.calls) == MAX_ATTEMPTS


def test_a_backlog_drains_several_reports_per_cycle(delivery, server):
    box = Outbox()
    box.put([{"container_id": container_id(n)} for n in range(2500)], [])
    server.route("POST", URL, response(200, {}))
    delivery.deliver(box, {})
    assert not box.pending()
    assert len(server.calls) == 3


def test_no_token_sends_no_authorization_header(server, clock, outbox):
    seen = []
    server.route("POST", URL, lambda kwargs: seen.append(kwargs["headers"]) or response(200, {}))
    Delivery(server, SERVER, "", (1, 2), Backoff(1, 2), clock).deliver(outbox, {})
    assert "Authorization" not in seen[0]


def test_a_timeout_is_a_retry(delivery, server, outbox):
    def hang(kwargs):
        raise requests.ReadTimeout("read timed out")

    server.route("POST", URL, hang)
    assert delivery.deliver(outbox, {}) is False
    assert outbox.pending()


def test_a_server_with_a_smaller_body_limit_gets_smaller_reports(delivery, server):
    box = Outbox()
    box.put([{"container_id": container_id(n), "image": "x" * 1000} for n in range(300)], [])
    taken = []

    def limited(kwargs):
        if len(kwargs["data"]) > 100_000:
            return response(413, {"error": "too_large"})
        taken.extend(c["container_id"] for c in json.loads(kwargs["data"])["containers"])
        return response(200, {})

    server.route("POST", URL, limited)
    while box.pending():
        assert delivery.deliver(box, {})
    assert sorted(taken) == sorted(container_id(n) for n in range(300))
    assert delivery.max_body <= 100_000
