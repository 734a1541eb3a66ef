"""``/query/ip/…``, ``/query/host/…`` and the bulk ``POST /query/ip``: who held an address, as text and JSON."""

from __future__ import annotations

import time

import pytest

from server.address_query import MAX_QUESTIONS
from server.state import state
from tests.server import samples
from tests.server.documents import validator
from tests.server.samples import API_ID, AUTH, HOST, SIDECAR_ID, TASK_LONG, TASK_UUID

BRIDGE_TASK = "7d6c5b4a39281706f5e4d3c2b1a09f8e"
BRIDGE_ARN = f"arn:aws:ecs:eu-central-1:210987654321:task/default/{BRIDGE_TASK}"
TASK_ADDRESS = "10.0.3.17"
STARTED = "2026-11-20T08:12:04.001Z"
READ_TOKEN = "r3ad-only"


def awsvpc(container_id: str = API_ID, name: str = "api", task_arn: str = samples.ARN_LONG, **fields) -> dict:
    return samples.container(
        container_id,
        name,
        task_arn,
        ports=[{"container_port": 8000, "protocol": "tcp"}],
        networks=[{"network_mode": "awsvpc", "ipv4_addresses": [TASK_ADDRESS], "ipv6_addresses": ["2a05:d014::17"]}],
        **fields,
    )


def bridge(container_id: str = SIDECAR_ID, name: str = "worker", host_port: int = 49153) -> dict:
    return samples.container(
        container_id,
        name,
        BRIDGE_ARN,
        ports=[{"container_port": 8080, "host_port": host_port, "protocol": "tcp"}],
        networks=[{"network_mode": "bridge", "ipv4_addresses": ["172.17.0.2"]}],
    )


@pytest.fixture
def held(app, report):
    report(awsvpc(), bridge())
    state(app).store.update_task(TASK_LONG, {"service_name": "web"})  # as the service-name job learns it


def test_an_address_answers_its_holders_task_id_as_text(client, held):
    response = client.get(f"/query/ip/{TASK_ADDRESS}")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.text == f"{TASK_LONG}\n"


@pytest.mark.parametrize("written", ["::ffff:10.0.3.17", "::FFFF:10.0.3.17"])
def test_other_spellings_of_an_address_find_the_same_holder(client, held, written):
    assert client.get(f"/query/ip/{written}").text == f"{TASK_LONG}\n"


def test_an_ipv6_address_in_upper_case_finds_its_holder(client, held):
    assert client.get("/query/ip/2A05:D014:0:0::17").text == f"{TASK_LONG}\n"


@pytest.mark.parametrize(
    ("query", "headers"),
    [("?format=json", {}), ("", {"Accept": "application/json"}), ("?format=JSON", {"Accept": "text/plain"})],
)
def test_json_when_asked_for_with_every_holding_and_its_interval(client, held, query, headers):
    response = client.get(f"/query/ip/{TASK_ADDRESS}{query}", headers=headers)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert (body["address"], body["at"], body["port"]) == (TASK_ADDRESS, None, None)
    (holding,) = body["holdings"]
    assert holding["task_id"] == TASK_LONG and holding["container_id"] == API_ID
    assert holding["container_name"] == "api" and holding["service_name"] == "web"
    assert holding["cluster_name"] == "default" and holding["instance_id"] == HOST["instance_id"]
    assert holding["via"] == "task" and holding["address"] == TASK_ADDRESS
    assert [(p["container_port"], p["protocol"]) for p in holding["ports"]] == [(8000, "tcp")]
    assert holding["from"] <= STARTED and holding["from_by"]
    assert holding["to"] is None and holding["to_by"] is None  # still holds it
    assert holding["overlap"] is False


def test_curl_and_browsers_get_text(client, held):
    for accept in ("*/*", "text/html,application/xhtml+xml,*/*;q=0.8", "text/plain, application/json;q=0.5"):
        assert client.get(f"/query/ip/{TASK_ADDRESS}", headers={"Accept": accept}).mimetype == "text/plain"


def test_an_instance_address_is_told_apart_by_host_port(client, report):
    report(bridge(), bridge(API_ID, "api", host_port=49160))
    instance = HOST["instance_ip"]
    assert client.get(f"/query/ip/{instance}?port=49153").text == f"{BRIDGE_TASK}\n"
    body = client.get(f"/query/ip/{instance}?port=49160&format=json").get_json()
    assert [(h["container_id"], h["via"]) for h in body["holdings"]] == [(API_ID, "instance")]
    assert body["port"] == 49160
    assert client.get(f"/query/ip/{instance}?port=8080").status_code == 404  # a container port, not published


def test_at_narrows_to_the_holders_of_that_moment(client, held):
    before = client.get(f"/query/ip/{TASK_ADDRESS}?at=2026-11-01T00:00:00Z")
    assert before.status_code == 404
    assert before.get_json() == {
        "error": "not_found",
        "message": f"nobody on record held {TASK_ADDRESS} at 2026-11-01T00:00:00.000Z",
    }
    for at in ("2026-11-22T10:00:00Z", "2026-11-22T11:00:00%2B01:00", "1795341600", "1795341600.5"):
        assert client.get(f"/query/ip/{TASK_ADDRESS}?at={at}").text == f"{TASK_LONG}\n", at


def test_nobody_is_a_404_with_a_json_message_in_either_format(client, held):
    for query in ("", "?format=json"):
        response = client.get(f"/query/ip/10.9.9.9{query}")
        assert response.status_code == 404
        assert response.get_json()["message"] == "nobody on record held 10.9.9.9"


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/query/ip/10.0.3", "address"),
        ("/query/ip/10.0.3.17/24", "address"),
        ("/query/ip/fe80::1%25eth0", "address"),
        ("/query/ip/010.000.003.017", "address"),
        ("/query/ip/not-an-address", "address"),
        (f"/query/ip/{TASK_ADDRESS}?at=yesterday", "at"),
        (f"/query/ip/{TASK_ADDRESS}?at=1999-12-31T23:59:59Z", "at"),
        (f"/query/ip/{TASK_ADDRESS}?at=99999999999999", "at"),
        (f"/query/ip/{TASK_ADDRESS}?port=0", "port"),
        (f"/query/ip/{TASK_ADDRESS}?port=65536", "port"),
        (f"/query/ip/{TASK_ADDRESS}?port=http", "port"),
        (f"/query/ip/{TASK_ADDRESS}?format=xml", "format"),
        ("/query/host/i-123", "instance ID"),
        ("/query/host/0123456789abcdef0", "instance ID"),
        ("/query/host/i-0123456789abcdef0?at=soon", "at"),
    ],
)
def test_malformed_questions_are_400_naming_what_is_wrong(client, held, path, words):
    response = client.get(path)
    assert response.status_code == 400, path
    assert response.get_json()["message"].startswith(words), response.get_json()


def test_a_host_answers_what_ran_on_it(client, held):
    instance = HOST["instance_id"]
    assert set(client.get(f"/query/host/{instance}").text.split()) == {TASK_LONG, BRIDGE_TASK}
    body = client.get(f"/query/host/{instance.upper().replace('I-', 'i-')}?format=json").get_json()
    assert body["instance_id"] == instance
    assert {h["container_id"] for h in body["holdings"]} == {API_ID, SIDECAR_ID}
    assert client.get(f"/query/host/{instance}?at=2026-11-01T00:00:00Z").status_code == 404
    assert client.get("/query/host/i-00000000").status_code == 404


def test_the_bulk_form_answers_each_question_in_order(client, held):
    questions = [
        {"address": TASK_ADDRESS},
        {"address": "bad"},
        {"address": HOST["instance_ip"], "port": 49153, "at": "2026-11-22T10:00:00Z"},
        {"address": "10.9.9.9", "at": 1795341600},
        {"address": TASK_ADDRESS, "at": "2026-11-01T00:00:00+00:00"},
        {"address": TASK_ADDRESS, "port": "x"},
        "not an object",
        {"port": 80},
    ]
    response = client.post("/query/ip", json={"questions": questions})
    assert response.status_code == 200
    answers = response.get_json()["answers"]
    assert len(answers) == len(questions)
    assert [h["task_id"] for h in answers[0]["holdings"]] == [TASK_LONG]
    assert answers[1]["error"] == "bad_request" and answers[1]["message"].startswith("$.questions[1].address")
    assert answers[2]["at"] == "2026-11-22T10:00:00.000Z" and answers[2]["port"] == 49153
    assert [h["task_id"] for h in answers[2]["holdings"]] == [BRIDGE_TASK]
    assert answers[3] == {"address": "10.9.9.9", "at": "2026-11-22T10:00:00.000Z", "port": None, "holdings": []}
    assert answers[4]["holdings"] == []
    assert answers[5]["message"].startswith("$.questions[5].port")
    assert answers[6]["message"].startswith("$.questions[6]: expected an object")
    assert answers[7]["message"] == "$.questions[7].address: required"


def test_the_bulk_form_takes_at_most_its_limit(client, held):
    full = client.post("/query/ip", json={"questions": [{"address": TASK_ADDRESS}] * MAX_QUESTIONS})
    assert full.status_code == 200 and len(full.get_json()["answers"]) == MAX_QUESTIONS
    over = client.post("/query/ip", json={"questions": [{"address": TASK_ADDRESS}] * (MAX_QUESTIONS + 1)})
    assert over.status_code == 413
    assert over.get_json()["message"].startswith(f"{MAX_QUESTIONS + 1} questions in one request; at most")


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'{"questions": {}}', b'{"questions": [NaN]}', b'{"answers": []}', b"\xff"]
)
def test_a_bulk_body_that_is_not_questions_is_400(client, body):
    response = client.post("/query/ip", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"] == "bad_request"


def test_every_route_needs_the_read_token_once_one_is_set(make_app, settings):
    client = make_app({**settings, "read_token": READ_TOKEN}).test_client()
    report = samples.map_report(awsvpc(task_arn=f"arn:aws:ecs:eu-central-1:210987654321:task/{TASK_UUID}"))
    assert client.post("/report/map", json=report, headers=AUTH).status_code == 200
    asks = [
        lambda h: client.get(f"/query/ip/{TASK_ADDRESS}", headers=h),
        lambda h: client.get(f"/query/host/{HOST['instance_id']}", headers=h),
        lambda h: client.post("/query/ip", json={"questions": [{"address": TASK_ADDRESS}]}, headers=h),
    ]
    for ask in asks:
        assert ask({}).status_code == 401
        assert ask({"Authorization": "Bearer wrong"}).status_code == 403
        assert ask({"Authorization": f"Bearer {READ_TOKEN}"}).status_code == 200
    assert client.get(f"/query/ip/{TASK_ADDRESS}", headers=AUTH).text == f"{TASK_UUID}\n"


def test_the_answers_conform_to_the_document(client, held):
    document = client.get("/openapi.json").get_json()
    instance = HOST["instance_id"]
    shown = client.get(f"/query/ip/{TASK_ADDRESS}?format=json").get_json()
    assert validator(document, "AddressHoldings").is_valid(shown)
    assert validator(document, "HostHoldings").is_valid(client.get(f"/query/host/{instance}?format=json").get_json())
    questions = {"questions": [{"address": TASK_ADDRESS, "at": 1795341600, "port": 8000}, {"address": "x"}]}
    assert validator(document, "AddressQuestions").is_valid(questions)
    answers = client.post("/query/ip", json=questions).get_json()
    assert "error" in answers["answers"][1]
    assert validator(document, "AddressAnswers").is_valid(answers)
    assert not validator(document, "AddressQuestions").is_valid({"questions": [{"port": 8000}]})


def test_a_container_of_a_lost_host_held_the_address_until_its_host_was_lost(make_app, settings):
    lapsing = make_app({**settings, "host_lease": "0.05"})
    client = lapsing.test_client()
    assert client.post("/report/map", json=samples.map_report(awsvpc()), headers=AUTH).status_code == 200
    state(lapsing).leases.interval = 0
    time.sleep(0.1)
    (holding,) = client.get(f"/query/ip/{TASK_ADDRESS}?format=json").get_json()["holdings"]
    assert holding["to_by"] == "lost" and holding["to"] is not None
    answers = client.post("/query/ip", json={"questions": [{"address": TASK_ADDRESS}]}).get_json()["answers"]
    assert answers[0]["holdings"][0]["to_by"] == "lost"
    assert client.get(f"/query/ip/{TASK_ADDRESS}?at={time.time() + 2:.0f}").status_code == 404  # not theirs since
