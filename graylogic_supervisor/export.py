"""The event log written out for integrators and process-mining tools: CSV, JSON
lines, or XES (IEEE 1849), one event per recorded step attempt.

The writers take the store's events as a stream and write each as it comes, so an
export's memory does not grow with the store. In XES a case (trace) is an execution
and an event's activity (``concept:name``) is its step id; the event's time is when
the step ended (``lifecycle:transition`` ``complete``) and its start is in
``start_timestamp``, the attribute process-mining tools read durations from. XML is
written by ``xml.sax.saxutils.XMLGenerator``, which escapes every value.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable
from typing import TextIO, cast
from xml.sax.saxutils import XMLGenerator  # nosec B406: writes XML, never parses any
from xml.sax.xmlreader import AttributesImpl  # nosec B406: as above

from graylogic_supervisor.store.export import StepEvent

FORMATS = ("csv", "jsonl", "xes")

COLUMNS = (
    "case_id",
    "seq",
    "activity",
    "name",
    "action",
    "target",
    "attempt",
    "start",
    "end",
    "duration_seconds",
    "outcome",
    "error",
    "playbook_id",
    "playbook_version",
    "component",
    "error_id",
    "case_status",
)


async def write_events(events: AsyncIterable[StepEvent], out: TextIO, format_name: str) -> int:
    """Write ``events`` to ``out`` in ``format_name``; how many were written."""
    if format_name == "csv":
        return await write_csv(events, out)
    if format_name == "jsonl":
        return await write_jsonl(events, out)
    if format_name == "xes":
        return await write_xes(events, out)
    raise ValueError(f"unknown export format {format_name!r}; one of {', '.join(FORMATS)}")


async def write_csv(events: AsyncIterable[StepEvent], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    async for event in events:
        writer.writerow(event.as_row())
        count += 1
    return count


async def write_jsonl(events: AsyncIterable[StepEvent], out: TextIO) -> int:
    count = 0
    async for event in events:
        out.write(json.dumps(event.as_row(), separators=(",", ":")) + "\n")
        count += 1
    return count


XES_NS = "http://www.xes-standard.org/"
EXTENSIONS = (
    ("Concept", "concept", "http://www.xes-standard.org/concept.xesext"),
    ("Time", "time", "http://www.xes-standard.org/time.xesext"),
    ("Lifecycle", "lifecycle", "http://www.xes-standard.org/lifecycle.xesext"),
)
CASE_ATTRIBUTES = (
    ("playbook_id", "playbook_id"),
    ("playbook_version", "playbook_version"),
    ("component", "component"),
    ("error_id", "error_id"),
    ("status", "case_status"),
)
EVENT_STRINGS = ("name", "action", "target", "outcome", "error")


class _Xes:
    """One XES document being written: elements with typed attributes, indented."""

    def __init__(self, out: TextIO) -> None:
        # a text stream (stdout, a file opened for text, StringIO) is an io.TextIOBase,
        # which XMLGenerator writes to as it is; typing.TextIO is the wider protocol
        stream = cast("io.TextIOBase", out)
        self._xml = XMLGenerator(stream, encoding="utf-8", short_empty_elements=True)
        self._out = out

    def start(self, tag: str, attrs: dict[str, str], depth: int) -> None:
        self._xml.ignorableWhitespace("\n" + "  " * depth)
        self._xml.startElement(tag, AttributesImpl(attrs))

    def end(self, tag: str, depth: int) -> None:
        self._xml.ignorableWhitespace("\n" + "  " * depth)
        self._xml.endElement(tag)

    def leaf(self, tag: str, attrs: dict[str, str], depth: int) -> None:
        self._xml.ignorableWhitespace("\n" + "  " * depth)
        self._xml.startElement(tag, AttributesImpl(attrs))
        self._xml.endElement(tag)

    def attribute(self, kind: str, key: str, value: str | int | float | None, depth: int) -> None:
        if value is not None:
            self.leaf(kind, {"key": key, "value": str(value)}, depth)

    def begin_document(self) -> None:
        self._xml.startDocument()
        self.start(
            "log",
            {"xes.version": "1.0", "xmlns": XES_NS},
            0,
        )
        for name, prefix, uri in EXTENSIONS:
            self.leaf("extension", {"name": name, "prefix": prefix, "uri": uri}, 1)
        self.start("global", {"scope": "trace"}, 1)
        self.attribute("string", "concept:name", "__INVALID__", 2)
        self.end("global", 1)
        self.start("global", {"scope": "event"}, 1)
        self.attribute("string", "concept:name", "__INVALID__", 2)
        self.attribute("date", "time:timestamp", "1970-01-01T00:00:00.000Z", 2)
        self.attribute("string", "lifecycle:transition", "complete", 2)
        self.end("global", 1)
        self.leaf("classifier", {"name": "Activity", "keys": "concept:name"}, 1)
        self.attribute("string", "concept:name", "graylogic-supervisor executions", 1)

    def end_document(self) -> None:
        self.end("log", 0)
        self._xml.endDocument()
        self._out.write("\n")


async def write_xes(events: AsyncIterable[StepEvent], out: TextIO) -> int:
    """The events as one XES log; they come grouped by case, in ``seq`` order."""
    xes = _Xes(out)
    xes.begin_document()
    case: str | None = None
    count = 0
    async for event in events:
        if event.case_id != case:
            if case is not None:
                xes.end("trace", 1)
            case = event.case_id
            xes.start("trace", {}, 1)
            xes.attribute("string", "concept:name", event.case_id, 2)
            for key, field in CASE_ATTRIBUTES:
                xes.attribute("string", key, str(getattr(event, field)), 2)
            xes.attribute("date", "start_timestamp", event.case_started_at, 2)
        xes.start("event", {}, 2)
        xes.attribute("string", "concept:name", event.activity, 3)
        xes.attribute("string", "lifecycle:transition", "complete", 3)
        xes.attribute("date", "time:timestamp", event.completed_at or event.started_at, 3)
        xes.attribute("date", "start_timestamp", event.started_at, 3)
        xes.attribute("int", "seq", event.seq, 3)
        xes.attribute("int", "attempt", event.attempt, 3)
        xes.attribute("float", "duration_seconds", event.duration_seconds, 3)
        for key in EVENT_STRINGS:
            xes.attribute("string", key, getattr(event, key), 3)
        xes.end("event", 2)
        count += 1
    if case is not None:
        xes.end("trace", 1)
    xes.end_document()
    return count
