"""VPC Flow Log records as AWS writes them: the fields of a format, the header line of S3 files, the timestamp
CloudWatch Logs exports put before each message, and plain or gzip input read line by line."""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import IO, NamedTuple, cast

#: The default format (version 2), in its order.
DEFAULT_FIELDS = (
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets",
    "bytes", "start", "end", "action", "log-status",
)  # fmt: skip
#: A field of a format string: ``${srcaddr}``.
FORMAT_FIELD = re.compile(r"\$\{([a-z0-9-]+)\}")
#: A field name in a header line: AWS adds fields over time, and a header names them all.
FIELD_NAME = re.compile(r"[a-z][a-z0-9-]*")
#: What a CloudWatch Logs export writes before each message: the event's time.
EXPORT_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9:]+)?")
#: Records that carry no flow: nothing was sent in the window, or records were lost (AWS's ``log-status``).
NO_FLOW_STATUSES = ("NODATA", "SKIPDATA")
GZIP_MAGIC = b"\x1f\x8b"


class FormatError(ValueError):
    """A format string or header the tool cannot read."""


class Positions(NamedTuple):
    """Where the fields the tool reads sit in a record (-1: not in the format)."""

    src: int
    dst: int
    pkt_src: int
    pkt_dst: int
    src_port: int
    dst_port: int
    protocol: int
    start: int
    end: int
    status: int


@dataclass(frozen=True)
class Layout:
    """The fields of one input's records, and where the ones the tool reads sit."""

    fields: tuple[str, ...]
    #: The header line read from the input, if it had one; written back with the added fields.
    header: str | None = None

    def __post_init__(self) -> None:
        missing = [f for f in ("srcaddr", "dstaddr") if f not in self.fields]
        if missing:
            raise FormatError(f"the format has no {' or '.join(missing)}: nothing to annotate")
        if "start" not in self.fields and "end" not in self.fields:
            raise FormatError("the format has neither start nor end: no time to ask about")
        names = ("srcaddr", "dstaddr", "pkt-srcaddr", "pkt-dstaddr", "srcport", "dstport", "protocol", "start", "end",
                 "log-status")  # fmt: skip
        found = Positions(*(self.fields.index(name) if name in self.fields else -1 for name in names))
        object.__setattr__(self, "positions", found)

    positions: Positions = field(init=False, repr=False, compare=False)


def parse_format(text: str) -> tuple[str, ...]:
    """A format string as CreateFlowLogs takes it (``${version} ${srcaddr} …``) as field names."""
    fields = tuple(FORMAT_FIELD.findall(text))
    rest = FORMAT_FIELD.sub("", text).strip()
    if not fields or rest:
        raise FormatError(f"expected a format such as '${{version}} ${{srcaddr}} ${{dstaddr}}', got {text[:80]!r}")
    return fields


def header_fields(line: str) -> tuple[str, ...] | None:
    """The fields a header line names (S3 files start with one; underscores are taken for hyphens), or None when the
    line is a record: a header is field names alone, ``srcaddr`` and ``dstaddr`` among them."""
    words = tuple(word.replace("_", "-") for word in line.split())
    if words and EXPORT_TIME.fullmatch(words[0]) and len(words) > 1:
        words = words[1:]
    if "srcaddr" not in words or "dstaddr" not in words or not all(FIELD_NAME.fullmatch(w) for w in words):
        return None
    return words


def split_record(line: str, width: int) -> tuple[str, list[str]] | None:
    """A record's values, with the CloudWatch export time before them ('' when none); None when the line has not
    ``width`` values."""
    values = line.split()
    if len(values) == width:
        return "", values
    if len(values) == width + 1 and EXPORT_TIME.fullmatch(values[0]):
        return values[0], values[1:]
    return None


def open_input(raw: io.BufferedReader) -> Iterator[str]:
    """The lines of ``raw``, gunzipped when it starts with gzip's magic bytes, without their line ends. ``raw`` stays
    open: whoever opened it closes it."""
    stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == GZIP_MAGIC else raw)
    lines = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", newline=None)
    try:
        for line in lines:
            yield line.rstrip("\n")
    finally:
        with suppress(ValueError):  # already closed by whoever opened ``raw``, when an error ended the reading
            lines.detach()
