"""Instance metadata: IMDSv2 tokens, the IMDSv1 fallback only where tokens are refused, and no IMDS at all."""

from __future__ import annotations

import logging

import pytest
import requests
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from agent.imds import FIELDS, TOKEN_MARGIN, TOKEN_TTL, ImdsUnavailable, InstanceMetadata
from tests.agent.fakes import IMDS, INSTANCE, FakeClock, FakeSession, response, tasks

EXPECTED = {name: INSTANCE[path] for name, path in FIELDS.items()}
TOKEN_URL = f"{IMDS}/latest/api/token"


class FakeImds(FakeSession):
    """An instance metadata service: `tokens` says whether it hands out tokens, `required` whether GETs need one."""

    def __init__(self, tokens: bool = True, required: bool = True, put_status: int = 405) -> None:
        super().__init__()
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.route("PUT", TOKEN_URL, self._token if tokens else response(put_status, "Method Not Allowed"))
        for path, value in INSTANCE.items():
            self.route("GET", f"{IMDS}/latest/{path}", self._field(value, required))

    def _token(self, kwargs):
        assert kwargs["headers"]["X-aws-ec2-metadata-token-ttl-seconds"] == str(TOKEN_TTL)
        self.issued.append(f"token-{len(self.issued)}")
        return response(200, self.issued[-1].encode())

    def _field(self, value, required):
        def answer(kwargs):
            token = (kwargs.get("headers") or {}).get("X-aws-ec2-metadata-token")
            if token is None and required:
                return response(401, "Unauthorized")
            if token is not None and (token not in self.issued or token in self.revoked):
                return response(401, "Unauthorized")
            return response(200, value.encode())

        return answer


def test_imdsv2_required_reads_every_field_with_one_token():
    service = FakeImds(required=True)
    assert InstanceMetadata(service, IMDS, (1, 2)).read() == EXPECTED
    assert service.calls.count(("PUT", TOKEN_URL)) == 1
    assert service.issued == ["token-0"]


def test_the_token_is_refreshed_before_it_expires():
    service, clock = FakeImds(), FakeClock()
    imds = InstanceMetadata(service, IMDS, (1, 2), clock)
    imds.read()
    clock.advance(TOKEN_TTL - TOKEN_MARGIN - 1)
    imds.read()
    assert len(service.issued) == 1
    clock.advance(1)
    assert imds.read() == EXPECTED
    assert len(service.issued) == 2


def test_a_revoked_token_is_replaced_once():
    service = FakeImds()
    imds = InstanceMetadata(service, IMDS, (1, 2))
    imds.read()
    service.revoked.add("token-0")
    assert imds.read() == EXPECTED
    assert service.issued == ["token-0", "token-1"]


@pytest.mark.parametrize("put_status", [403, 404, 405])
def test_imdsv1_only_falls_back_to_plain_gets(put_status):
    service = FakeImds(tokens=False, required=False, put_status=put_status)
    assert InstanceMetadata(service, IMDS, (1, 2)).read() == EXPECTED
    assert service.calls.count(("PUT", TOKEN_URL)) == 1


def test_a_token_put_that_fails_otherwise_is_no_fallback():
    service = FakeImds(tokens=False, required=False, put_status=500)
    with pytest.raises(ImdsUnavailable, match="HTTP 500"):
        InstanceMetadata(service, IMDS, (1, 2)).read()
    assert service.calls == [("PUT", TOKEN_URL)]


def test_a_timed_out_put_tries_plain_gets_and_takes_a_token_when_they_are_refused():
    """IMDSv2 behind a hop limit drops the PUT's answer; if plain GETs are then refused, ask for a token again."""
    with responses.RequestsMock(registry=OrderedRegistry, assert_all_requests_are_fired=True) as rsps:
        rsps.put(TOKEN_URL, body=requests.ReadTimeout("timed out"))
        rsps.get(f"{IMDS}/latest/meta-data/instance-id", status=401)
        rsps.put(
            TOKEN_URL, body="fresh", match=[matchers.header_matcher({"X-aws-ec2-metadata-token-ttl-seconds": "21600"})]
        )
        for path in FIELDS.values():
            rsps.get(
                f"{IMDS}/latest/{path}",
                body=INSTANCE[path],
                match=[matchers.header_matcher({"X-aws-ec2-metadata-token": "fresh"})],
            )
        assert InstanceMetadata(requests.Session(), IMDS, (1, 2)).read() == EXPECTED


def test_the_region_comes_from_the_zone_on_instances_without_it():
    service = FakeImds()
    service.route("GET", f"{IMDS}/latest/meta-data/placement/region", response(404, "Not Found"))
    assert InstanceMetadata(service, IMDS, (1, 2)).read()["region"] == "eu-central-1"


def test_no_imds_means_empty_fields_one_warning_and_a_later_retry(make_agent, clock, caplog):
    ecs = FakeSession()
    ecs.route("GET", "http://127.0.0.1:51678/v1/metadata", response(200, {"Cluster": "default"}))
    ecs.route("GET", "http://127.0.0.1:51678/v1/tasks", response(200, tasks()))
    agent = make_agent(session=ecs, imds_retry_interval=300)
    with caplog.at_level(logging.WARNING, logger="agent"):
        for _ in range(3):
            agent.poll_once()
            clock.advance(5)
        clock.advance(300)
        agent.poll_once()
    assert {agent.host[name] for name in FIELDS} == {""}
    assert agent.host["cluster_name"] == "default"
    assert len([r for r in caplog.records if "no instance metadata" in r.getMessage()]) == 1
    assert ecs.calls.count(("PUT", TOKEN_URL)) == 2


def test_answers_without_a_content_type_are_read_as_ascii():
    service = FakeImds(tokens=False, required=False)
    instance = {**INSTANCE, "meta-data/local-ipv4": "10.9.9.9"}  # which charset guessing takes for UTF-16
    for path, value in instance.items():

        def plain(kwargs, value=value):
            answer = response(200, value.encode())
            answer.encoding = None  # no Content-Type: requests would guess a charset from a few bytes
            return answer

        service.route("GET", f"{IMDS}/latest/{path}", plain)
    assert InstanceMetadata(service, IMDS, (1, 2)).read() == {**EXPECTED, "instance_ip": "10.9.9.9"}


def test_a_local_ipv4_that_is_no_ip_address_is_left_empty_with_a_warning(caplog):
    service = FakeImds()
    service.route("GET", f"{IMDS}/latest/meta-data/local-ipv4", response(200, b"<html>captive portal</html>"))
    with caplog.at_level(logging.WARNING, logger="agent"):
        fields = InstanceMetadata(service, IMDS, (1, 2)).read()
    assert fields == {**EXPECTED, "instance_ip": ""}  # the server would refuse every report carrying it
    assert "not an IP address" in caplog.text


def test_instance_metadata_redirects_are_never_followed():
    elsewhere = "http://127.0.0.1:9/"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.put(TOKEN_URL, status=200, body="token-0")
        for path in INSTANCE:
            mock.get(f"{IMDS}/latest/{path}", status=302, headers={"Location": f"{elsewhere}{path}"})
            mock.get(f"{elsewhere}{path}", body="10.6.6.6")
        with pytest.raises(ImdsUnavailable, match="HTTP 302"):
            InstanceMetadata(requests.Session(), IMDS, (1, 2)).read()
    assert all(call.request.url.startswith(IMDS) for call in mock.calls)
