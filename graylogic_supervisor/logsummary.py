"""One log line per cause per interval, however often the cause recurs.

What other programs send (a flood on the broker, a bridge with a bug that
publishes garbage every millisecond) must not decide how much the supervisor
writes to the journal. The first occurrence of a cause is logged at once; the
next ones within the interval are only counted, and the count goes out with
the next line of that cause, or with :meth:`LogSummary.flush` once the
interval is over. Counters (Prometheus) carry the exact numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from graylogic_supervisor.clock import Clock

DEFAULT_INTERVAL_S = 60.0


@dataclass
class _Cause:
    logged_at: float
    held: int = 0  # occurrences counted, not logged, since logged_at
    latest: str = ""
    level: int = logging.WARNING
    extra: dict[str, Any] = field(default_factory=dict)


class LogSummary:
    """Rate-limited log lines keyed by cause (a readable prefix such as
    ``"heartbeat from bridge knx refused"``); the detail changes from line to line."""

    def __init__(
        self, logger: logging.Logger, clock: Clock, interval_s: float = DEFAULT_INTERVAL_S
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._interval_s = interval_s
        self._causes: dict[str, _Cause] = {}

    def note(
        self,
        cause: str,
        detail: str,
        level: int = logging.WARNING,
        extra: dict[str, Any] | None = None,
    ) -> bool:
        """Log ``"{cause}: {detail}"`` unless this cause was logged within the interval, in
        which case it is counted for the next line; True if a line was written."""
        now = self._clock.monotonic()
        entry = self._causes.get(cause)
        if entry is not None and now - entry.logged_at < self._interval_s:
            entry.held += 1
            entry.latest, entry.level, entry.extra = detail, level, extra or {}
            return False
        held = f" ({entry.held} more since the last line)" if entry and entry.held else ""
        self._logger.log(level, "%s: %s%s", cause, detail, held, extra=extra)
        self._causes[cause] = _Cause(logged_at=now)
        return True

    def flush(self) -> None:
        """Write the counts held back for causes whose interval is over; call it now and
        then (a loop's idle tick) so the tail of a flood is reported when it ends."""
        now = self._clock.monotonic()
        for cause, entry in list(self._causes.items()):
            if now - entry.logged_at < self._interval_s:
                continue
            if entry.held:
                self._logger.log(
                    entry.level,
                    "%s: %d more since the last line, the latest: %s",
                    cause,
                    entry.held,
                    entry.latest,
                    extra=entry.extra,
                )
                self._causes[cause] = _Cause(logged_at=now)
            else:
                del self._causes[cause]  # quiet for a whole interval: forget it
