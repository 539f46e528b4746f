"""The daemon's watch over the audit chain: incremental, off the loop, and published.

It keeps the last entry it verified (sequence number and hash). A check then
asks the store whether that entry is still there with the same hash (a cut
tail or a recomputed chain changes it), verifies only the entries added since,
and holds the result against the head file. Hashing runs in the daemon's audit
worker thread, so a look at /audit costs the entries written since the last
look, not the whole log, and never blocks the event loop. The whole chain is
verified again at start-up and every ``full_every_s`` (an entry changed in
place behind the last verified one shows only then, or by ``audit verify``).

The verified head is published retained on MQTT: a third copy, off the box.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from graylogic_supervisor.clock import Clock, isoformat
from graylogic_supervisor.store.audit import AuditLog, ChainCheck
from graylogic_supervisor.store.audit_head import EMPTY, ChainHead, HeadFileError

logger = logging.getLogger(__name__)

FULL_EVERY_S = 6 * 3600.0
"""The whole chain again (in the worker thread) this often: ~1 s of one core at 100k entries."""
PUBLISH_EVERY_S = 1.0
"""At most one check and head publication a second, however fast entries come."""
POLL_S = 5.0
"""Entries from other processes (the CLI) are looked for this often."""
TAMPER_ERROR_ID = "ERR-SYS-AUDIT-001"

Alert = Callable[[str, str, dict[str, str]], None]


class ChainWatch:
    def __init__(
        self,
        audit: AuditLog,
        clock: Clock,
        alert: Alert | None = None,
        full_every_s: float = FULL_EVERY_S,
    ) -> None:
        self._audit = audit
        self._clock = clock
        self._alert = alert
        self._full_every_s = full_every_s
        self._anchor: ChainHead | None = None
        self._full_at: tuple[float, datetime] | None = None  # (monotonic, wall)
        self._broken: ChainCheck | None = None
        self._may_create_head = True
        self._republish = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        if audit.head_keeper is not None:
            audit.head_keeper.listeners.append(lambda _head: self._wake.set())

    @property
    def verified(self) -> ChainHead | None:
        """The last entry verified, while the chain holds; what is published."""
        return None if self._broken is not None else self._anchor

    async def check(self) -> ChainCheck:
        """Verify what was added since the last check (concurrent callers share one).

        Once tampering is found it is the answer until the daemon restarts: an
        append-only log does not heal.
        """
        async with self._lock:
            if self._broken is not None:
                return self._broken
            result = await self._check()
            if result.ok and result.head is not None:
                self._anchor = result.head
            elif not result.ok:
                self._broken = result
                self._raise_alarm(result)
            return result

    async def _check(self) -> ChainCheck:
        # The head file before the store: it is written after its commit (see verify).
        try:
            on_file = await self._audit.read_head()
        except HeadFileError as exc:
            return ChainCheck(False, 0, None, f"the head file is unreadable: {exc}")
        notes: list[str] = []
        anchor = self._anchor
        due = self._full_at is None or (
            self._clock.monotonic() - self._full_at[0] >= self._full_every_s
        )
        if anchor is None or due:
            done = await self._audit.follow()
            if done.bad_seq is None:
                self._full_at = (self._clock.monotonic(), self._clock.now())
        else:
            moved = await self._anchor_moved(anchor)
            if moved is not None:
                return moved
            done = await self._audit.follow(anchor)
            if self._full_at is not None:
                notes.append(
                    f"entries 1..{anchor.seq} verified in full or as they came since"
                    f" {isoformat(self._full_at[1])};"
                    f" {done.last.seq - anchor.seq} new entries verified now"
                )
        warnings = []
        if on_file is None and self._audit.head_keeper is not None and done.last.seq > 0:
            warnings.append("no head file beside the store: a deleted tail cannot be ruled out")
        references = [("the head file", on_file)] if on_file is not None else []
        return await self._audit.judge(done, references, notes, warnings)

    async def _anchor_moved(self, anchor: ChainHead) -> ChainCheck | None:
        """The entry verified last must still be there, with the same hash."""
        stored = await self._audit.hash_at(anchor.seq)
        if stored == anchor.hash:
            return None
        last = await self._audit.last()
        if stored is None and last.seq < anchor.seq:
            first = last.seq + 1
            return ChainCheck(
                False,
                last.seq,
                first,
                f"entries {first}..{anchor.seq} were deleted: the supervisor verified"
                f" {anchor.seq} entries, the store has {last.seq}",
                head=last,
            )
        return ChainCheck(
            False,
            last.seq,
            anchor.seq,
            f"entry {anchor.seq} changed since the supervisor verified it:"
            " the chain was recomputed or replaced",
            head=last,
        )

    def _raise_alarm(self, check: ChainCheck) -> None:
        where = f" at entry {check.first_bad_seq}" if check.first_bad_seq else ""
        message = f"the audit log does not verify{where}: {check.problem}"
        logger.error("%s", message, extra={"error_id": TAMPER_ERROR_ID})
        if self._alert is not None:
            self._alert("critical", message, {"error_id": TAMPER_ERROR_ID})

    async def run(self, publish: Callable[[ChainHead], None]) -> None:
        """Check after appends (at most once a second) and every ``POLL_S``; publish the
        verified head when it moves; put back a head file that is missing."""
        published: ChainHead | None = None
        while True:
            self._wake.clear()
            check = await self.check()
            if check.ok and check.warnings and self._may_create_head:
                self._may_create_head = await self._create_head(check)
                continue
            head = self.verified
            if self._republish:
                self._republish, published = False, None
            if head is not None and head != published:
                publish(head)
                published = head
                if self._audit.head_keeper is not None:
                    # a head left behind (a crash after a commit) catches up
                    await self._audit.head_keeper.advance(head)
            await self._clock.sleep(PUBLISH_EVERY_S)
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await self._clock.wait_for(self._wake.wait(), POLL_S - PUBLISH_EVERY_S)

    def republish(self) -> None:
        """The broker may have lost its retained messages (a restart): publish again."""
        self._republish = True
        self._wake.set()

    async def _create_head(self, check: ChainCheck) -> bool:
        """A chain with no head file: say so in the log itself, then write the head.
        False when that failed (it is not tried again: the log must not fill with it)."""
        keeper = self._audit.head_keeper
        assert keeper is not None  # only a store on disk warns of a missing head
        logger.warning(
            "no audit head file at %s over %d entries: recording it and creating the head",
            keeper.file.path,
            check.entries,
        )
        await self._audit.append(
            "supervisor",
            "audit.head_created",
            "audit",
            {"reason": "no head file beside the store", "entries": check.entries},
            now=self._clock.now(),
        )
        confirmed = await self.check()
        if not confirmed.ok or confirmed.head is None:
            return False
        head = confirmed.head
        try:
            await keeper.run(lambda: keeper.file.create(head))
        except OSError as exc:
            logger.error("cannot create the audit head file %s: %s", keeper.file.path, exc)
            return False
        return True

    async def create_if_empty(self) -> None:
        """A new store: the head file starts at the empty chain, so that emptying a chain
        that later grows is caught."""
        keeper = self._audit.head_keeper
        if keeper is None or (await self._audit.last()).seq:
            return
        if await keeper.run(lambda: keeper.file.create(EMPTY)):
            logger.info("audit head file created at %s", keeper.file.path)
