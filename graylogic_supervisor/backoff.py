"""Capped exponential backoff with jitter: one formula for reconnects and retries."""

from __future__ import annotations

import random


def backoff_delay(
    initial_s: float,
    multiplier: float,
    max_s: float,
    jitter: float,
    *,
    attempt: int,
    rng: random.Random,
) -> float:
    """The delay before retry number ``attempt`` (1-based).

    ``jitter`` spreads the delay by up to that fraction either way, so many
    clients that lost the same broker do not all come back in the same instant.
    """
    delay = min(initial_s * multiplier ** (attempt - 1), max_s)
    if jitter:
        delay *= 1 + rng.uniform(-jitter, jitter)
    return max(delay, 0.0)


class Backoff:
    """Successive delays for one retry loop; ``reset()`` after a success."""

    def __init__(
        self,
        initial_s: float,
        multiplier: float,
        max_s: float,
        jitter: float,
        *,
        rng: random.Random,
    ) -> None:
        self._args = (initial_s, multiplier, max_s, jitter)
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        self._attempt += 1
        return backoff_delay(*self._args, attempt=self._attempt, rng=self._rng)

    def reset(self) -> None:
        self._attempt = 0
