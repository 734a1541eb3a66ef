"""The page's words for a container's state and times, and its timeline's layout (pure)."""

from __future__ import annotations

import pytest

from server.page import timeline, wording

NOW = "2026-11-25T16:00:00.000Z"


@pytest.mark.parametrize(
    ("record", "said"),
    [
        ({"known_status": "RUNNING", "desired_status": "RUNNING"}, "running"),
        ({"known_status": "RUNNING", "desired_status": "STOPPED"}, "running, asked to stop"),
        ({"known_status": "PENDING"}, "pending: not started yet"),
        ({"known_status": "STOPPED"}, "stopped"),
        (
            {"known_status": "STOPPED", "exit_code": "137", "reason": "OutOfMemoryError: Container killed"},
            "stopped with exit code 137: OutOfMemoryError: Container killed",
        ),
        (
            {"known_status": "STOPPED", "exit_code": "0", "stopped_reason": "Scaling activity"},
            "stopped with exit code 0: Scaling activity",
        ),
        (
            {"known_status": "RUNNING", "lost_since": "2026-11-25T15:09:00.000Z"},
            "lost with its host since 2026-11-25 15:09:00 UTC",
        ),
        ({}, "unknown: no status on record"),
    ],
)
def test_status_in_words(record, said):
    assert wording.status(record) == said


@pytest.mark.parametrize(
    ("moment", "said"),
    [
        ("2026-11-25T15:59:15.000Z", "45 s ago"),
        ("2026-11-25T15:48:00.000Z", "12 min ago"),
        ("2026-11-25T12:55:00.000Z", "3 h 5 min ago"),
        ("2026-11-24T16:00:00.000Z", "1 day ago"),
        ("2026-11-21T15:00:00.000Z", "4 days ago"),
        ("2026-11-25T16:02:00.000Z", "in 2 min"),
        ("not a time", ""),
    ],
)
def test_times_ago(moment, said):
    assert wording.ago(moment, NOW) == said


def test_running_first_then_newest_first():
    records = [
        {"container_id": "a", "known_status": "STOPPED", "first_seen": "2026-11-25T15:00:00.000Z"},
        {"container_id": "b", "known_status": "RUNNING", "first_seen": "2026-11-20T15:00:00.000Z"},
        {"container_id": "c", "known_status": "RUNNING", "first_seen": "2026-11-24T15:00:00.000Z"},
        {"container_id": "d", "known_status": "RUNNING", "lost_since": "x", "first_seen": "2026-11-25T15:30:00.000Z"},
    ]
    assert [r["container_id"] for r in wording.newest_running_first(records)] == ["c", "b", "d", "a"]


def test_a_life_runs_from_its_first_moment_to_its_stop_with_every_moment_in_order():
    record = {
        "container_id": "a" * 64,
        "container_name": "api",
        "known_status": "STOPPED",
        "created_at": "2026-11-25T15:00:00.000Z",
        "started_at": "2026-11-25T15:00:02.000Z",
        "stopped_at": "2026-11-25T15:30:00.000Z",
    }
    events = [
        {"event": "known_status", "from": "RUNNING", "to": "STOPPED", "timestamp": "2026-11-25T15:30:00.000Z"},
        {"event": "appeared", "from": "", "to": "RUNNING", "timestamp": "2026-11-25T15:00:05.000Z"},
        {"event": "known_status", "timestamp": "garbage"},
    ]
    drawn = timeline.build([(record, events)], NOW)
    (row,) = drawn.rows
    assert [m.what for m in row.moments] == [
        "created", "started", "appeared as RUNNING", "status RUNNING → STOPPED", "stopped",
    ]  # fmt: skip
    assert row.ended and row.x == 10 and row.x + row.width == pytest.approx(timeline.WIDTH - 10, abs=0.2)
    assert drawn.start == "2026-11-25 15:00:00 UTC" and drawn.end == "2026-11-25 15:30:00 UTC"


def test_lives_side_by_side_share_one_axis_and_an_open_one_runs_to_now():
    early = {"container_id": "a" * 64, "container_name": "api", "known_status": "RUNNING",
             "first_seen": "2026-11-25T14:00:00.000Z"}  # fmt: skip
    late = {"container_id": "b" * 64, "container_name": "envoy", "known_status": "STOPPED",
            "first_seen": "2026-11-25T15:00:00.000Z", "stopped_at": "2026-11-25T15:30:00.000Z"}  # fmt: skip
    drawn = timeline.build([(early, []), (late, [])], NOW, labelled=True)
    api, envoy = drawn.rows
    assert not api.ended and api.x == timeline.LABEL_WIDTH + 10
    assert api.x + api.width == pytest.approx(timeline.WIDTH - 10, abs=0.2)
    assert api.x < envoy.x < envoy.x + envoy.width < api.x + api.width
    assert [label for label, _ in timeline.interleaved(drawn)] == ["api", "envoy", "envoy"]
