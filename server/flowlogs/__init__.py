"""``python -m server.flowlogs`` and ``ecs-id-mapper-flowlogs``: VPC Flow Log records written back with the task,
container, service and cluster that held each end's address at the flow's start, asked of a server's bulk form.

Only ``requests`` and the standard library: it runs wherever the logs are, without the server's dependencies.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, NamedTuple, TextIO, cast

from server.flowlogs.formats import (
    DEFAULT_FIELDS,
    NO_FLOW_STATUSES,
    FormatError,
    Layout,
    header_fields,
    open_input,
    parse_format,
    split_record,
)
from server.flowlogs.resolve import NO_ADDRESS, NO_FLOW, SHOWN, Resolver, ServerError

PREFIX = "ECS_ID_MAPPER_"
#: Records read before their addresses are asked about together: big enough for full batches, small enough to stream.
CHUNK = 20000
#: Malformed lines listed by number in the summary; the rest are counted.
LISTED = 20
ADDED = tuple(f"{end}-{shown}" for end in ("src", "dst") for shown, _ in SHOWN)


@dataclass
class Summary:
    """What could not be resolved, and why."""

    records: int = 0
    annotated: int = 0
    no_flow: Counter[str] = field(default_factory=Counter)
    unresolved: Counter[str] = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)
    malformed_count: int = 0

    def bad_line(self, where: str, why: str) -> None:
        self.malformed_count += 1
        if len(self.malformed) < LISTED:
            self.malformed.append(f"{where}: {why}")

    def lines(self) -> list[str]:
        said = [f"{self.records} records, {self.annotated} with at least one end resolved"]
        said += [f"skipped {n} {status} records (no flow to resolve)" for status, n in sorted(self.no_flow.items())]
        said += [f"{n} ends unresolved: {why}" for why, n in self.unresolved.most_common()]
        if self.malformed_count:
            said.append(f"{self.malformed_count} malformed lines, not written:")
            said += [f"  {line}" for line in self.malformed]
            if self.malformed_count > len(self.malformed):
                said.append(f"  … and {self.malformed_count - len(self.malformed)} more")
        return said


@dataclass(slots=True)
class Flow:
    """One record as read: its line, values, and the questions it asks."""

    line: str
    values: list[str]
    ends: tuple[tuple[str, int | None], tuple[str, int | None]] | None  # (address, port) of src and dst
    protocol: int | None
    seconds: int


class Chunk(NamedTuple):
    """Records read, and the server's answers about their addresses on their way."""

    layout: Layout
    flows: list[Flow]
    asked: Future[None]


class Annotator:
    """Reads records, resolves their ends in chunks, writes them in order. While the server answers about one
    chunk, the one before is written and the next read: the server's time and ours overlap."""

    def __init__(self, resolver: Resolver, out: TextIO, *, as_json: bool, layout: Layout | None = None):
        self.resolver, self.out, self.as_json = resolver, out, as_json
        self.given = layout
        self.summary = Summary()
        # One asking thread: each chunk's questions leave out what the chunks before it asked.
        self.asking = ThreadPoolExecutor(1, thread_name_prefix="asking")

    def close(self) -> None:
        self.asking.shutdown(cancel_futures=True)

    def run(self, name: str, lines: Iterator[str], progress: IO[str] | None = None) -> None:
        layout, pending, first = self.given, [], True
        started, previous = time.monotonic(), None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if first:
                first = False
                # A header line (S3 files start with one) names the fields, whatever --format says.
                fields = header_fields(line)
                if fields is not None:
                    layout = Layout(fields, line)
                    if not self.as_json:
                        self.out.write(f"{line} {' '.join(ADDED)}\n")
                    continue
                layout = layout or Layout(DEFAULT_FIELDS)
            assert layout is not None
            flow = self.read(layout, line, f"{name}:{number}")
            if flow is not None:
                pending.append(flow)
            if len(pending) >= CHUNK:
                previous = self.step(previous, layout, pending)
                pending = []
                if progress:
                    rate = self.summary.records / max(time.monotonic() - started, 1e-9)
                    progress.write(f"\r{name}: {self.summary.records} records, {rate:,.0f}/s")
                    progress.flush()
        if pending and layout is not None:
            previous = self.step(previous, layout, pending)
        if previous is not None:
            self.finish(previous)
        if progress:
            progress.write("\n")

    def read(self, layout: Layout, line: str, where: str) -> Flow | None:
        values = line.split()
        if len(values) != len(layout.fields):
            split = split_record(line, len(layout.fields))
            if split is None:
                self.summary.bad_line(where, f"expected {len(layout.fields)} fields, got {len(values)}")
                return None
            values = split[1]
        at = layout.positions
        self.summary.records += 1
        if at.status >= 0 and values[at.status] in NO_FLOW_STATUSES:
            self.summary.no_flow[values[at.status]] += 1
            return Flow(line, values, None, None, 0)
        try:
            seconds = int(values[at.start] if at.start >= 0 and values[at.start] != "-" else values[at.end])
            protocol = None if at.protocol < 0 or values[at.protocol] == "-" else int(values[at.protocol])
            ends = (
                (address(values, at.pkt_src, at.src), port(values, at.src_port)),
                (address(values, at.pkt_dst, at.dst), port(values, at.dst_port)),
            )
        except (ValueError, IndexError):
            self.summary.records -= 1
            self.summary.bad_line(where, "a time, port or protocol that is not a number")
            return None
        return Flow(line, values, ends, protocol, seconds)

    def step(self, previous: Chunk | None, layout: Layout, flows: list[Flow]) -> Chunk:
        """Ask about ``flows``; meanwhile write the chunk before."""
        chunk = Chunk(layout, flows, self.asking.submit(self.ask_about, flows))
        if previous is not None:
            self.finish(previous)
        return chunk

    def finish(self, chunk: Chunk) -> None:
        chunk.asked.result()  # the server's failure, raised here
        self.write(chunk.layout, chunk.flows)

    def ask_about(self, flows: list[Flow]) -> None:
        resolver = self.resolver
        resolver.learn(a for f in flows if f.ends for a, _ in f.ends if a != "-")
        if resolver.cut:
            resolver.learn_moments((a, f.seconds) for f in flows if f.ends for a, _ in f.ends if a in resolver.cut)

    def write(self, layout: Layout, flows: list[Flow]) -> None:
        side, unresolved, written = self.resolver.side, self.summary.unresolved, []
        for flow in flows:
            if flow.ends is None:
                src = dst = NO_FLOW
            else:
                (src_address, src_port), (dst_address, dst_port) = flow.ends
                src = side(src_address, src_port, flow.protocol, flow.seconds) if src_address != "-" else NO_ADDRESS
                dst = side(dst_address, dst_port, flow.protocol, flow.seconds) if dst_address != "-" else NO_ADDRESS
                if src.shown is None:
                    unresolved[src.why] += 1
                if dst.shown is None:
                    unresolved[dst.why] += 1
                if src.shown or dst.shown:
                    self.summary.annotated += 1
            if self.as_json:
                record: dict[str, object] = dict(zip(layout.fields, flow.values, strict=True))
                record["src"], record["dst"] = src.shown, dst.shown
                written.append(json.dumps(record))
            else:
                written.append(f"{flow.line} {src.text} {dst.text}")
        written.append("")
        self.out.write("\n".join(written))


def address(values: list[str], packet: int, interface: int) -> str:
    """The packet's own address when the format has it (``pkt-*``: the original one, past any intermediate)."""
    if packet >= 0 and values[packet] != "-":
        return values[packet]
    return values[interface]


def port(values: list[str], at: int) -> int | None:
    """A port, None for none (no such field, ``-``, or 0 as ICMP's records have)."""
    if at < 0 or values[at] == "-":
        return None
    return int(values[at]) or None


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ecs-id-mapper-flowlogs",
        description="Annotate VPC Flow Log records with the ECS task, container, service and cluster of each end.",
    )
    parser.add_argument("files", nargs="*", help="flow log files, plain or gzip; none or - reads standard input")
    parser.add_argument(
        "--server",
        default=os.environ.get(PREFIX + "SERVER_URL", ""),
        help="the server's base URL (default: ECS_ID_MAPPER_SERVER_URL)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(PREFIX + "READ_TOKEN", ""),
        help="the read token (default: ECS_ID_MAPPER_READ_TOKEN)",
    )
    parser.add_argument(
        "--format",
        dest="log_format",
        help="the records' format string, as given to CreateFlowLogs "
        "('${version} ${srcaddr} …'); default: a header line, else the default format",
    )
    parser.add_argument("--json", action="store_true", help="write JSON lines instead of the records with fields added")
    parser.add_argument("--parallel", type=int, default=2, help="requests in flight at once (default 2)")
    args = parser.parse_args(argv)
    if not args.server:
        parser.error("give the server's URL: --server or ECS_ID_MAPPER_SERVER_URL")
    if args.parallel < 1:
        parser.error("--parallel: at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    try:
        layout = Layout(parse_format(args.log_format)) if args.log_format else None
    except FormatError as exc:
        print(f"ecs-id-mapper-flowlogs: --format: {exc}", file=sys.stderr)
        return 2
    resolver = Resolver(args.server, args.token, parallel=args.parallel)
    out = sys.stdout
    annotator = Annotator(resolver, out, as_json=args.json, layout=layout)
    progress = sys.stderr if sys.stderr.isatty() else None
    try:
        for name in args.files or ["-"]:
            if name == "-":
                annotator.run("<stdin>", open_input(cast(io.BufferedReader, sys.stdin.buffer)), progress)
            else:
                with open(name, "rb") as raw:
                    annotator.run(name, open_input(raw), progress)
    except (OSError, ServerError, FormatError) as exc:
        out.flush()
        print(f"ecs-id-mapper-flowlogs: {exc}", file=sys.stderr)
        return 1
    finally:
        annotator.close()
        resolver.close()
    out.flush()
    for line in annotator.summary.lines():
        print(line, file=sys.stderr)
    for why, n in resolver.malformed.most_common():
        print(f"{n} holdings in the server's answers left out: {why}", file=sys.stderr)
    asked = len(resolver.held) + len(resolver.refused)
    print(f"asked {asked} addresses in {resolver.requests} requests ({resolver.waited:.1f} s)", file=sys.stderr)
    return 0
