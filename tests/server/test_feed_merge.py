"""``server.records.merge`` for the ECS feed's entries: version orders the feed, a life only goes forward, and the
feed's STOPPED is final."""

from __future__ import annotations

from server.records import merge

NOW = "2026-11-20T12:00:00.000Z"
AGENT = {
    "container_id": "9f8e" * 16,
    "task_id": "e4d3c2b1a0f94e8d7c6b5a4f3e2d1c0b",
    "known_status": "RUNNING",
    "desired_status": "RUNNING",
    "instance_ip": "10.0.1.17",
    "ports": '[{"container_port":8000,"host_port":49153,"protocol":"tcp"}]',
    "sample_time": "2026-11-20T10:00:00.000Z",
}


def feed(version: int, status: str, **fields) -> dict:
    return {
        "container_id": AGENT["container_id"],
        "task_id": AGENT["task_id"],
        "known_status": status,
        "ecs_status": status,
        "desired_status": "STOPPED" if status == "STOPPED" else "RUNNING",
        "state_version": str(version),
        "sample_time": "2026-11-20T09:14:06.900Z",
        "ports": "",
        **fields,
    }


def stored(*entries: dict) -> dict:
    record = None
    for entry in entries:
        record = merge(record, entry, NOW)
    assert record is not None
    return record


def test_a_feed_stop_ends_a_life_the_agent_saw_later_with_ecss_time_and_reasons():
    record = stored(
        AGENT,
        feed(5, "STOPPED", stopped_at="2026-11-20T09:14:06.900Z", exit_code="137", stop_code="UserInitiated"),
    )
    assert (record["known_status"], record["desired_status"], record["stopped_at"]) == (
        "STOPPED", "STOPPED", "2026-11-20T09:14:06.900Z",
    )  # fmt: skip
    assert (record["exit_code"], record["stop_code"], record["instance_ip"]) == ("137", "UserInitiated", "10.0.1.17")
    assert record["ports"] == AGENT["ports"]  # the feed's empty value erases nothing
    assert record["sample_time"] == AGENT["sample_time"]  # the latest sample of either source


def test_no_report_revives_what_ecs_stopped():
    record = stored(AGENT, feed(5, "STOPPED"), {**AGENT, "sample_time": "2026-11-20T11:00:00.000Z"})
    assert (record["known_status"], record["desired_status"]) == ("STOPPED", "STOPPED")
    assert record["sample_time"] == "2026-11-20T11:00:00.000Z"  # the rest of the report is taken


def test_the_feeds_stop_replaces_a_stop_the_record_guessed():
    vanished = {
        **AGENT,
        "known_status": "STOPPED",
        "stopped_at": "2026-11-20T10:30:00.000Z",
        "stopped_reason": "vanished: no longer listed by its host's ECS agent",
    }
    record = stored(vanished, feed(5, "STOPPED", stopped_at="2026-11-20T09:14:06.900Z", stopped_reason="Spot"))
    assert (record["stopped_at"], record["stopped_reason"]) == ("2026-11-20T09:14:06.900Z", "Spot")
    # ECS's stop, once known, is not moved by a resend or a later event of the same stop.
    again = merge(record, feed(6, "STOPPED", stopped_at="2026-11-20T09:20:00.000Z"), NOW)
    assert again["stopped_at"] == "2026-11-20T09:14:06.900Z"


def test_a_life_only_goes_forward_across_the_two_sources():
    assert stored(AGENT, feed(2, "PENDING"))["known_status"] == "RUNNING"  # the feed's late PENDING
    assert stored(feed(3, "RUNNING"), {**AGENT, "known_status": "PENDING"})["known_status"] == "RUNNING"
    agent_stopped = {**AGENT, "known_status": "STOPPED", "desired_status": "STOPPED"}
    assert stored(agent_stopped, feed(3, "RUNNING"))["known_status"] == "STOPPED"


def test_the_feed_is_ordered_by_version_whatever_its_times():
    future = feed(3, "RUNNING", sample_time="2026-11-20T12:05:00.000Z", started_at="2026-11-20T08:01:24.600Z")
    stopped = feed(5, "STOPPED", exit_code="0", stopped_at="2026-11-20T09:14:06.900Z")
    record = stored(future, stopped)
    assert (record["known_status"], record["exit_code"], record["state_version"]) == ("STOPPED", "0", "5")
    late = stored(stopped, future)
    assert (late["known_status"], late["state_version"], late.get("started_at")) == ("STOPPED", "5", None)


def test_a_resend_changes_nothing_but_when_it_was_last_heard_of():
    entries = [AGENT, feed(3, "RUNNING", service_name="orders-api"), feed(5, "STOPPED", exit_code="1")]
    record = stored(*entries)
    assert merge(record, entries[2], "2026-11-20T13:00:00.000Z") == {**record, "last_seen": "2026-11-20T13:00:00.000Z"}
    assert merge(record, entries[1], NOW) == record
