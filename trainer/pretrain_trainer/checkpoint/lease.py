"""Who owns a checkpoint URI: an owner record (`OWNER.json` at the root) with the job's name and identity, a
heartbeat and an expiry. A run takes the lease before it loads or writes anything; a second writer with another
identity is refused while the lease is live, a restart of the same run (same identity) takes it over, and a stale
lease (no heartbeat for `ttl` seconds: its run is gone) may be taken by anyone. Rank 0 renews it on a timer and
before every checkpoint's manifest is written, so a run that lost its lease never publishes a checkpoint.

Object stores have no locks. Taking the lease is a read, a write carrying a random nonce, a pause of `settle`
seconds and a read back: of two runs racing for a free lease, the one whose record is not read back refuses.
The remaining window: a run whose read and write are more than `settle` seconds apart (a stalled process) can
overwrite a record that its rival already read back; the rival then finds the foreign nonce at its next renewal
(within `heartbeat` seconds, and before its next manifest) and stops. S3's conditional writes (`If-None-Match`)
would close that window where the store supports them; moto and most S3-compatible stores do not yet. Torch-free.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pretrain_trainer import contract as c
from pretrain_trainer.checkpoint.layout import CheckpointError
from pretrain_trainer.storage import ObjectStore, StorageError, StorageNotFound

log = logging.getLogger("pretrain_trainer.checkpoint")

OWNER = "OWNER.json"
LEASE_SECONDS = 600.0
HEARTBEAT_SECONDS = 60.0
SETTLE_SECONDS = 1.0
RUN_ID_FILE = "run-id"


class LeaseHeld(CheckpointError, ValueError):
    """Another run owns the checkpoint URI. A ValueError too: restarting cannot help (exit code "bad config")."""


class LeaseLost(CheckpointError):
    """This run's lease was taken over by another writer while it ran."""


@dataclass(frozen=True)
class Owner:
    """The owner record: which job and run hold the URI, from which process, until when."""

    job: str
    identity: str
    holder: str
    nonce: str
    heartbeat_unix: float
    expires_unix: float

    @classmethod
    def parse(cls, raw: bytes) -> Owner | None:
        """The record, or None for one that is unreadable (treated as no lease: a garbled record protects nothing)."""
        try:
            data = json.loads(raw)
            return cls(**{key: data[key] for key in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires_unix, timezone.utc).isoformat(timespec="seconds")
        return f"job {self.job!r} (run {self.identity}, {self.holder}), lease expires {until} unless renewed"


def run_identity(run_dir: Path, environ: dict[str, str] | None = None) -> str:
    """This run's identity: the PretrainJob's uid in a pod; otherwise a run id kept in the run folder, so that
    a restart of the same local run reclaims its lease and another run folder is another writer."""
    env = os.environ if environ is None else environ
    if env.get(c.PRETRAIN_JOB_UID):
        return f"uid:{env[c.PRETRAIN_JOB_UID]}"
    path = run_dir / RUN_ID_FILE
    if path.exists():
        return f"run:{path.read_text().strip()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    path.write_text(run_id + "\n")
    return f"run:{run_id}"


class Lease:
    """The lease of one run on one checkpoint root (`store`). Only rank 0 holds one."""

    def __init__(
        self,
        store: ObjectStore,
        job: str,
        identity: str,
        *,
        ttl: float = LEASE_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.job, self.identity = store, job, identity
        self.ttl, self.heartbeat, self.settle, self.clock = ttl, heartbeat, settle, clock
        self.nonce = uuid.uuid4().hex
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Owner | None:
        try:
            return Owner.parse(self.store.read(OWNER))
        except StorageNotFound:
            return None

    def acquire(self) -> Owner | None:
        """Take the lease; returns the record it replaced (None if there was none). LeaseHeld when another
        identity holds a live lease, naming the URI, the owner and when the lease expires."""
        previous = self.current()
        self._refuse_if_foreign(previous)
        self._write()
        if self.settle:
            time.sleep(self.settle)
        self._refuse_if_foreign(self.current(), raced=True)
        if previous is not None and previous.identity != self.identity:
            log.warning("took over the expired lease of %s on %s", previous.describe(), self.store.uri)
        return previous

    def renew(self) -> None:
        """Extend the lease; LeaseLost if the record is no longer this run's (another writer took over)."""
        if self.lost is not None:
            raise self.lost
        now = self.current()
        if now is None or now.nonce != self.nonce:
            who = now.describe() if now is not None else "nobody (the record was deleted)"
            self.lost = LeaseLost(
                self.store.uri_for(OWNER),
                f"this run no longer owns the checkpoint URI: it is held by {who}; stopping before writing a "
                "checkpoint into another run's",
            )
            raise self.lost
        self._write()

    def release(self) -> None:
        """Give the lease up at the end of the run (only if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            now = self.current()
            if now is not None and now.nonce == self.nonce:
                self.store.delete(OWNER)
        except StorageError as exc:  # it expires on its own
            log.warning("could not release the lease on %s: %s", self.store.uri, exc)

    def start_heartbeat(self) -> None:
        """Renew every `heartbeat` seconds in a daemon thread; a lost lease is kept in `lost` for `renew()`."""
        self._thread = threading.Thread(target=self._beat, name="checkpoint-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.renew()
            except LeaseLost as exc:
                log.error("%s", exc)
                return
            except StorageError as exc:  # a brown-out: the next beat tries again, well within the ttl
                log.warning("lease heartbeat on %s failed: %s", self.store.uri, exc)

    def _write(self) -> None:
        now = self.clock()
        record = Owner(self.job, self.identity, self.holder, self.nonce, now, now + self.ttl)
        self.store.write(OWNER, json.dumps(asdict(record), indent=1).encode())

    def _refuse_if_foreign(self, owner: Owner | None, raced: bool = False) -> None:
        if owner is None or owner.nonce == self.nonce:
            return
        if not raced and (owner.identity == self.identity or owner.expires_unix <= self.clock()):
            return  # our own earlier process, or a stale lease: ours to take over
        why = "took the lease at the same moment" if raced else "holds a live lease on it"
        raise LeaseHeld(
            self.store.uri,
            f"another run writes checkpoints here: {owner.describe()}, {why}. Two runs must not share a checkpoint "
            "URI: give this job its own checkpoint.uri, or stop the other run and wait for its lease to expire",
        )


def claim(lease: Lease | None, agree: Callable[[BaseException | None, Any], list[Any]]) -> None:
    """Take the lease on rank 0 (`lease`; None on the other ranks) and make every rank raise LeaseHeld if it was
    refused. `agree(error, payload)` is the checkpoint manager's cross-rank exchange."""
    refusal = None
    error: BaseException | None = None
    if lease is not None:
        try:
            lease.acquire()
            lease.start_heartbeat()
        except LeaseHeld as exc:
            refusal = (exc.uri, exc.detail)
        except Exception as exc:
            error = exc
    gathered = agree(error, refusal)
    if gathered[0] is not None:
        raise LeaseHeld(*gathered[0])


__all__ = ["OWNER", "Lease", "LeaseHeld", "LeaseLost", "Owner", "claim", "run_identity"]
