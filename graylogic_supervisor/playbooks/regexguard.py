"""Regular expressions that cannot hang the loop: patterns held to what is fast on any text.

Python's ``re`` backtracks and cannot be interrupted, so a pattern is refused when
it could take exponential time: a repetition inside a repetition, an alternation
inside one, a backreference; and at most two variable-length repetitions, on
text of at most ``MAX_MATCH_TEXT`` characters (two ``.*`` cost its cube).
Used by playbook expressions (``matches()``) and anywhere else an installer's
pattern is searched.
"""

from __future__ import annotations

import re
import re._parser as regex_parser  # type: ignore[import-not-found]  # no stub; stable in 3.11+
from collections.abc import Callable
from typing import Any

MAX_MATCH_TEXT = 1_000
MAX_REGEX_REPEATS = 2


def safe_regex(pattern: str, error: Callable[[str], Exception]) -> re.Pattern[str]:
    """``pattern`` compiled, or ``error(reason)`` if it is bad or could backtrack for ages."""
    try:
        compiled = re.compile(pattern)
        reason = _slow_regex(regex_parser.parse(pattern), inside_repeat=False, repeats=[0])
    except (re.error, RecursionError, OverflowError) as exc:
        raise error(f"bad regular expression {pattern!r}: {exc}") from None
    if reason is not None:
        raise error(f"regular expression {pattern!r} {reason}")
    return compiled


def _slow_regex(items: Any, inside_repeat: bool, repeats: list[int]) -> str | None:
    """Why the parsed pattern could take more than polynomial time on short text, or None."""
    for op, value in items:
        name = str(op)
        found: str | None = None
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = value
            if low != high:
                if inside_repeat:
                    return "repeats a repetition (can take exponential time)"
                repeats[0] += 1
                if repeats[0] > MAX_REGEX_REPEATS:
                    return f"has more than {MAX_REGEX_REPEATS} variable-length repetitions"
            found = _slow_regex(body, inside_repeat or high > 1, repeats)
        elif name == "BRANCH":
            if inside_repeat:
                return "repeats an alternation (can take exponential time)"
            for branch in value[1]:
                found = found or _slow_regex(branch, inside_repeat, repeats)
        elif name == "SUBPATTERN":
            found = _slow_regex(value[3], inside_repeat, repeats)
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _slow_regex(value[1], inside_repeat, repeats)
        elif name == "ATOMIC_GROUP":
            found = _slow_regex(value, inside_repeat, repeats)
        elif name.startswith("GROUPREF"):
            return "uses a backreference (can take exponential time)"
        if found is not None:
            return found
    return None
