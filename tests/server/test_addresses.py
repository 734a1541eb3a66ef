"""Addresses as users type them, and the pure parts of the address index: keys, starts and times of a record."""

from __future__ import annotations

import json

import pytest

from server.addresses import Holding, moment, normalise, on_host
from server.store import address_index
from server.validation import ValidationError


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("10.0.3.17", "10.0.3.17"),
        ("::ffff:10.0.3.17", "10.0.3.17"),
        ("::FFFF:10.0.3.17", "10.0.3.17"),
        ("2001:DB8::17", "2001:db8::17"),
        ("2001:0db8:0000:0000:0000:0000:0000:0017", "2001:db8::17"),
        ("fe80::1", "fe80::1"),
        ("0.0.0.0", "0.0.0.0"),
        ("::", "::"),
    ],
)
def test_spellings_of_one_address_normalise_alike(given, canonical):
    assert normalise(given) == canonical


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("010.000.003.017", "zero-padded IPv4 parts are ambiguous"),
        ("10.0.3.017", "zero-padded IPv4 parts are ambiguous"),
        ("::ffff:010.0.3.17", "zero-padded IPv4 parts are ambiguous"),
        ("10.0.3.0/24", "not a network with a prefix length"),
        ("fe80::1%eth0", "an IPv6 zone"),
        ("[2001:db8::17]", "without brackets"),
        ("10.0.3", "expected an IPv4 or IPv6 address"),
        ("10.0.3.256", "expected an IPv4 or IPv6 address"),
        ("0x0a.0.3.17", "expected an IPv4 or IPv6 address"),
        ("example.com", "expected an IPv4 or IPv6 address"),
        (" 10.0.3.17", "expected one IPv4 or IPv6 address"),
        ("1" * 100, "expected one IPv4 or IPv6 address"),
        ("", "required"),
    ],
)
def test_anything_else_is_refused_with_a_reason(given, says):
    with pytest.raises(ValidationError) as refused:
        normalise(given)
    assert refused.value.path == "address"
    assert says in refused.value.problem


def test_a_zero_alone_is_no_padding():
    assert normalise("10.0.0.0") == "10.0.0.0"
    assert normalise("0.10.100.0") == "0.10.100.0"


@pytest.mark.parametrize("instance_id", ["", "i-", "I-0aaa", "i-0aaa/../x", "0aaa"])
def test_on_host_refuses_what_is_no_instance_id(instance_id):
    with pytest.raises(ValidationError):
        on_host(None, instance_id)  # type: ignore[arg-type]  # refused before the store is asked


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("2026-11-20T08:01:24.123456789Z", "2026-11-20T08:01:24.123Z"),
        ("2026-11-20T10:01:24+02:00", "2026-11-20T08:01:24.000Z"),
        ("2026-11-20T08:01:24.6Z", "2026-11-20T08:01:24.600Z"),
        ("0001-01-01T00:00:00Z", ""),
        ("not a time", ""),
        ("", ""),
    ],
)
def test_the_times_a_record_holds_as_text_are_read_in_the_stored_format(written, stored):
    assert address_index.moment(written) == stored


def networks(*ipv4, ipv6=()):
    return json.dumps([{"network_mode": "awsvpc", "ipv4_addresses": list(ipv4), "ipv6_addresses": list(ipv6)}])


def test_an_awsvpc_record_is_found_by_its_task_addresses_and_its_instance_not_by_the_instance_address():
    record = {
        "networks": networks("10.0.3.17", ipv6=("2001:DB8::17",)),
        "private_ip": "10.0.3.17",
        "instance_ip": "10.0.1.7",
        "instance_id": "i-0aaa",
        "started_at": "2026-11-20T08:01:24Z",
        "first_seen": "2026-11-20T08:01:20.000Z",
    }
    assert address_index.keys_of(record) == ["10.0.3.17", "2001:db8::17", "instance:i-0aaa"]
    assert address_index.entries(record) == {
        ("10.0.3.17", "2026-11-20T08:01:20.000Z"),
        ("2001:db8::17", "2026-11-20T08:01:20.000Z"),
        ("instance:i-0aaa", "2026-11-20T08:01:20.000Z"),
    }


def test_a_bridge_record_is_found_by_its_instance_address():
    record = {"instance_ip": "10.0.1.7", "ec2_instance_id": "i-0ccc", "first_seen": "2026-11-20T08:01:20.000Z"}
    assert address_index.keys_of(record) == ["10.0.1.7", "instance:i-0ccc"]


def test_a_record_that_knows_no_moment_of_its_life_has_no_entries():
    assert address_index.entries({"instance_ip": "10.0.1.7"}) == set()
    assert address_index.entries(None) == set()


def test_a_record_with_many_addresses_keeps_within_the_bound():
    record = {"networks": networks(*(f"10.0.3.{n}" for n in range(1, 30))), "instance_id": "i-0aaa"}
    keys = address_index.keys_of(record)
    assert len(keys) == address_index.MAX_KEYS
    assert keys[-1] == "instance:i-0aaa"


def test_a_holding_as_json_shows_the_record_as_the_api_does():
    holding = Holding(
        {"container_id": "c", "ports": '[{"container_port":80,"host_port":80,"protocol":"tcp"}]'},
        "10.0.3.17", "task", [{"container_port": 80}], "2026-11-20T08:01:24.000Z", "started",
    )  # fmt: skip
    shown = holding.as_json()
    assert shown["record"]["ports"] == [{"container_port": 80, "host_port": 80, "protocol": "tcp"}]
    assert (shown["until"], shown["until_by"], shown["overlap"]) == (None, None, False)


def test_a_moment_is_read_in_any_iso_spelling_and_refused_when_it_names_none():
    assert moment("2026-11-20T10:01:24+02:00") == "2026-11-20T08:01:24.000Z"
    assert moment("2026-11-20T08:01:24.000Z") == "2026-11-20T08:01:24.000Z"
    assert moment(None) is None
    for wrong in ("yesterday", "1999-12-31T23:59:59Z", "", "2" * 100):
        with pytest.raises(ValidationError) as refused:
            moment(wrong)
        assert refused.value.path == "at"
