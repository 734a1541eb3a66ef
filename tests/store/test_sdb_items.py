"""The SimpleDB item layout on its own: chunking, names, sharded families (no requests)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.store.sdb import items


@given(st.dictionaries(st.sampled_from(["image", "ports", "host_name", "x"]), st.text(max_size=3000)))
def test_a_record_survives_its_attributes(fields):
    record = {"container_id": "a" * 64, **fields}
    attrs = items.record_attributes(record)
    assert all(len(v.encode()) <= items.MAX_BYTES and v.isascii() for v in attrs.values())
    assert items.record_from(attrs) == record


def test_a_shorter_rewrite_ignores_chunks_left_from_a_longer_one():
    long, short = {"image": "x" * 5000}, {"image": "y"}
    attrs = {**items.record_attributes(long), **items.record_attributes(short)}
    assert items.record_from(attrs) == short


def test_a_torn_or_empty_slot_holds_no_record():
    attrs = items.record_attributes({"image": "x" * 5000})
    del attrs["record.2"]
    assert items.record_from(attrs) is None
    assert items.record_from({}) is None


def test_a_record_too_large_for_one_item_is_refused():
    with pytest.raises(ValueError, match="too large"):
        items.record_attributes({"ports": "p" * (items.RECORD_MAX_CHUNKS * items.MAX_BYTES + 1)})


@pytest.mark.parametrize(
    ("value", "plain"),
    [("0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e", True), ("3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", True),
     ("ev:1.2_3-4", True), ("a/b", False), ("!shards", False), ("#abc", False), ("x" * 129, False), ("", False),
     ("é", False), ("\ud800", False)],
)  # fmt: skip
def test_keys_are_plain_or_digests(value, plain):
    made = items.key(value)
    assert (made == value) is plain
    assert "/" not in made and not made.startswith("!") and len(made) <= 128
    assert made.startswith("#") is not plain


def test_buckets_are_short_ids():
    assert items.bucket("9f8e7d6c5b4a" + "0" * 52) == "9f8e7d6c5b4a"
    assert items.bucket("NOT-HEX") == items.key("NOT-HEX")
    assert items.service_family("c", "s") != items.service_family("c\0s", "")
    assert len(items.service_family("c" * 1024, "s" * 1024)) < 80


@given(st.dictionaries(st.text(alphabet="abc:", min_size=1, max_size=8), st.text(max_size=2500), max_size=30))
def test_entries_survive_their_attributes(texts):
    new = {k: json.dumps(v) for k, v in texts.items()}
    attrs: dict[str, str] = {}
    for entry_key, text in new.items():
        attrs.update(items.entry_attributes(entry_key, text))
    assert all(len(v.encode()) <= items.MAX_BYTES for v in attrs.values())
    assert items.entries_of(attrs) == new


def test_a_family_spills_into_new_shards_and_says_so():
    family = items.Family("task/t")
    new = {f"c{n:03}": json.dumps(f"c{n:03}") for n in range(600)}
    writes, count = family.plan(new)
    assert list(writes) == ["task/t", "task/t/1", "task/t/2"]
    assert count == 3
    assert [len(a) for a in writes.values()] == [
        items.SHARD_PAIRS - 1,
        items.SHARD_PAIRS,
        600 - 2 * items.SHARD_PAIRS + 1,
    ]
    # What is held is skipped; the next entry goes to the last shard.
    family = items.Family("task/t", [{**writes["task/t"], items.SHARDS: "3"}, writes["task/t/1"], writes["task/t/2"]])
    again, count = family.plan({**new, "new": '"new"'})
    assert (again, count) == ({"task/t/2": {"new": '"new"'}}, None)


def test_an_entry_never_spans_two_shards():
    family = items.Family("f", [{f"k{n}": "1" for n in range(items.SHARD_PAIRS - 2)}])
    writes, count = family.plan({"big": json.dumps("x" * 3000)})
    assert list(writes) == ["f/1"] and count == 2
    assert len(writes["f/1"]) == 4  # a head and three chunks


@given(st.lists(st.text(max_size=3000), min_size=1, max_size=5))
def test_events_survive_their_record_items_attributes(texts):
    events = {f"e{i}": {"event_id": f"e{i}", "from": text} for i, text in enumerate(texts)}
    attrs = items.record_attributes({"container_id": "c"})
    for i, (entry_key, event) in enumerate(events.items()):
        attrs.update(items.event_attributes(entry_key, i + 1, event))
    assert items.record_from(attrs) == {"container_id": "c"}  # events never pass for record attributes
    held = items.events_in(attrs)
    assert {k: json.loads(v) for k, v in held.items()} == {k: [i + 1, e] for i, (k, e) in enumerate(events.items())}
    assert items.last_arrival(held.values()) == len(texts)
    assert all(len(v.encode()) <= items.MAX_BYTES for v in attrs.values())


def test_arrival_numbers_follow_the_wanted_ones_and_only_grow():
    assert items.arrivals(0, [100, 101, 102]) == [100, 101, 102]
    assert items.arrivals(500, [100, 101]) == [501, 502]
    assert items.arrivals(100, [100, 100, 300]) == [101, 102, 300]
