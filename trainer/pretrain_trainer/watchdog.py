"""The stall watchdog: one thread per rank that ends the process when training stops making progress.

A rank that hangs (a stopped or swapped-out process, a wedged GPU, a dead NIC) leaves every other rank blocked in
its next collective, and nothing moves until the process group's timeout. Instead each rank's watchdog:

- publishes a heartbeat in the rendezvous store after every step (at most every 50 ms) and at least every second
  (`heartbeat/<rank>`: host, last step, when it last progressed, when the thread last ran), so that any rank can
  tell who is alive;
- when its own rank has made no progress for `timeout_s` (no `beat()`), reads its peers' heartbeats, names the
  likely culprit (a rank whose thread went quiet is stopped or lost; else the rank furthest behind), logs which rank,
  which host and which step, leaves the cause in the termination message and exits with EXIT_STALLED, which the
  operator answers with a gang restart from the newest checkpoint.

A stopped rank cannot report itself; its peers do, within `timeout_s` plus one check interval.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

log = logging.getLogger("pretrain_trainer.watchdog")

KEY_PREFIX = "pretrain/heartbeat/"
STORE_TIMEOUT_S = 5.0
MIN_PUBLISH_GAP_S = 0.05  # a heartbeat read from a store whose host is stopped must not hang the watchdog


@dataclass(frozen=True)
class Heartbeat:
    rank: int
    host: str
    step: int
    progressed_at: float  # wall-clock time of the rank's last progress
    seen_at: float  # wall-clock time its watchdog thread last ran

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: bytes) -> Heartbeat:
        return cls(**json.loads(raw))


class HeartbeatBoard:
    """Heartbeats in the job's c10d store (a TCPStore client of its own, with a short timeout)."""

    def __init__(self, store: Any, world_size: int) -> None:
        self.store, self.world_size = store, world_size

    @classmethod
    def connect(cls, host: str, port: int, world_size: int) -> HeartbeatBoard:
        import torch.distributed as dist

        store = dist.TCPStore(
            host, port, is_master=False, timeout=timedelta(seconds=STORE_TIMEOUT_S), wait_for_workers=False
        )
        return cls(store, world_size)

    def publish(self, beat: Heartbeat) -> None:
        self.store.set(f"{KEY_PREFIX}{beat.rank}", beat.to_json())

    def read(self) -> list[Heartbeat]:
        keys = [f"{KEY_PREFIX}{rank}" for rank in range(self.world_size)]
        return [Heartbeat.from_json(self.store.get(key)) for key in keys if self.store.check([key])]


def culprit(me: Heartbeat, peers: list[Heartbeat], now: float, quiet_s: float, world_size: int = 1) -> str:
    """Who most likely stalled the gang, in words: a rank that never published a heartbeat, or whose watchdog went
    quiet (its process is stopped or its host lost), else the rank furthest behind, else this rank itself."""
    silent = sorted(set(range(world_size)) - {p.rank for p in peers} - {me.rank})
    if silent:
        return f"rank {silent[0]} never published a heartbeat: its process is stopped or hung, or its host is lost"
    quiet = [p for p in peers if p.rank != me.rank and now - p.seen_at > quiet_s]
    if quiet:
        p = min(quiet, key=lambda p: p.seen_at)
        return (
            f"rank {p.rank} on host {p.host} has not answered for {now - p.seen_at:.0f} s (last step {p.step}): "
            "its process is stopped or hung, or its host is lost"
        )
    behind = [p for p in peers if p.step < me.step]
    if behind:
        p = min(behind, key=lambda p: p.step)
        return f"rank {p.rank} on host {p.host} is behind at step {p.step} and has not progressed since"
    return f"rank {me.rank} on host {me.host} itself made no progress (a hung collective, data read or device)"


class StallWatchdog:
    """`with StallWatchdog(600, rank=r, ...) as dog:` then `dog.beat(step)` after every step."""

    def __init__(
        self,
        timeout_s: float,
        *,
        rank: int,
        board: HeartbeatBoard | None = None,
        on_stall: Callable[[str], None],
        host: str | None = None,
        step: int = 0,
    ) -> None:
        self.timeout_s = timeout_s
        self.rank = rank
        self.host = host or socket.gethostname()
        self.board = board
        self.on_stall = on_stall
        self.interval_s = min(1.0, timeout_s / 4)
        self._step = step
        self._progressed = time.monotonic()
        self._progressed_wall = time.time()
        self._stopping = False
        self._wake = threading.Event()  # a beat or the end: publish now rather than at the next interval
        self._thread = threading.Thread(target=self._watch, name=f"stall-watchdog-r{rank}", daemon=True)

    def beat(self, step: int) -> None:
        """Training progressed (a step, a checkpoint, a validation run finished)."""
        self._step = step
        self._progressed = time.monotonic()
        self._progressed_wall = time.time()
        self._wake.set()

    def __enter__(self) -> StallWatchdog:
        self.beat(self._step)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=self.interval_s * 2 + STORE_TIMEOUT_S)

    def _heartbeat(self) -> Heartbeat:
        return Heartbeat(self.rank, self.host, self._step, self._progressed_wall, time.time())

    def _watch(self) -> None:
        while True:  # publish at once, then every interval: a peer stopped early still has a stale heartbeat
            me = self._heartbeat()
            if self.board is not None:
                try:
                    self.board.publish(me)
                except Exception as err:  # the store's host may be the stalled one; keep watching
                    log.debug("heartbeat not published: %s", err)
            idle = time.monotonic() - self._progressed
            if idle > self.timeout_s:
                self.on_stall(self._report(me, idle))
                return
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopping:
                return
            time.sleep(MIN_PUBLISH_GAP_S)  # fast steps: one heartbeat per gap, not one per step

    def _report(self, me: Heartbeat, idle: float) -> str:
        head = (
            f"stalled: rank {self.rank} on host {self.host} made no progress for {idle:.0f} s after step {me.step} "
            f"(training.stallTimeoutSeconds {self.timeout_s:g})"
        )
        try:
            peers = self.board.read() if self.board is not None else []
        except Exception as err:  # a stopped rank 0 stops the store with it
            return f"{head}; the rendezvous store does not answer ({type(err).__name__}): rank 0 is likely stalled"
        world = self.board.world_size if self.board is not None else 1
        return f"{head}; {culprit(me, peers, time.time(), quiet_s=max(3 * self.interval_s, 2.0), world_size=world)}"


def exit_stalled(report: str) -> None:
    """The default reaction: log, leave the cause for the operator, end the process now (the main thread is blocked
    in a collective or a device call, so nothing else could end it)."""
    from pretrain_trainer.__main__ import leave_failure_message
    from pretrain_trainer.contract import EXIT_STALLED

    log.error("%s; exiting with %d so that the gang restarts from the newest checkpoint", report, EXIT_STALLED)
    for handler in logging.getLogger().handlers:
        handler.flush()
    leave_failure_message(report)
    os._exit(EXIT_STALLED)


__all__ = ["Heartbeat", "HeartbeatBoard", "StallWatchdog", "culprit", "exit_stalled"]
