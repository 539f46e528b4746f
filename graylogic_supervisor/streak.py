"""A run of the same failure, logged once: at its start, and when it ends.

A loop that retries a store call every few seconds while the disk is full (or
another process holds the write lock) would otherwise log the same error
thousands of times; the journal would hide everything else.
"""

from __future__ import annotations

import logging


class ErrorStreak:
    """The first failure of a streak at ERROR, the repeats at DEBUG, the recovery at INFO."""

    def __init__(self, what: str, logger: logging.Logger) -> None:
        self._what = what
        self._logger = logger
        self.failures = 0

    def failed(self, error: BaseException, retry_in_s: float) -> None:
        self.failures += 1
        if self.failures == 1:
            self._logger.error(
                "%s failed, tried again every %g s until it works: %s",
                self._what,
                retry_in_s,
                error,
            )
        else:
            self._logger.debug("%s failed again (%d): %s", self._what, self.failures, error)

    def succeeded(self) -> None:
        if self.failures:
            self._logger.info("%s works again, after %d failures", self._what, self.failures)
        self.failures = 0
