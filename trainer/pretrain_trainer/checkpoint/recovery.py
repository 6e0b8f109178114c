"""Recovering a checkpoint root after what real clusters do: damaged checkpoints are set aside (renamed, never
deleted), the leftovers of killed saves are removed, and the staging folders of dead processes go. Runs on one
rank (rank 0 for the store, each rank for its own staging folders); torch-free.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pretrain_trainer.checkpoint.layout import (
    MANIFEST,
    CheckpointNotFound,
    CheckpointUnusable,
    aside_dir,
    complete_steps,
    delete_step,
    scan,
    step_dir,
)
from pretrain_trainer.checkpoint.transfer import copy_object
from pretrain_trainer.storage import ObjectStore

if TYPE_CHECKING:
    from pretrain_trainer.checkpoint.manager import CheckpointManager

log = logging.getLogger("pretrain_trainer.checkpoint")

ManifestCheck = Callable[[dict[str, Any]], None]

# ckpt-save-step-00000100-rank0-pid4242-<random>: the staging folder of one rank's save or load.
_STAGING = re.compile(r"^ckpt-(save|load)-step-\d+-rank(\d+)-pid(\d+)-")


def staging_prefix(what: str, step: int, rank: int) -> str:
    """The name prefix of a staging folder; it carries the pid so that a later process can tell a dead one's."""
    return f"ckpt-{what}-{step_dir(step)}-rank{rank}-pid{os.getpid()}-"


@dataclass(frozen=True)
class Resumed:
    """What `CheckpointManager.resume` loaded, and the damaged checkpoints it set aside on the way."""

    step: int
    trainer_state: dict[str, Any]
    set_aside: list[tuple[int, str, str]] = field(default_factory=list)
    """(step, the URI it was moved to, why) of each checkpoint that failed verification, newest first."""


def resume_newest(
    manager: CheckpointManager,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    *,
    floor: int | None,
    check: ManifestCheck | None,
) -> Resumed | None:
    """The body of `CheckpointManager.resume` (see there); a collective: every rank calls it."""
    listed = manager.steps() if manager.rank == 0 else []
    candidates = [s for s in manager.agree(None, listed)[0] if floor is None or s >= floor]
    if floor is not None and floor not in candidates:
        hint = f"complete checkpoints: {', '.join(map(str, candidates)) or 'none'} at or after it"
        raise CheckpointNotFound(manager.checkpoint_uri(floor), f"no complete checkpoint at step {floor}; {hint}")
    aside: list[tuple[int, str, str]] = []
    for step in reversed(candidates):
        try:
            state = manager.load(step, model, optimizer, scheduler, check=check)
        except CheckpointUnusable as exc:
            if step == floor:
                raise
            aside.append((step, manager.set_aside(step, "damaged"), str(exc)))
            if manager.rank == 0:
                log.warning(
                    "checkpoint %s is unusable (%s); set aside as %s, falling back to an earlier one",
                    manager.checkpoint_uri(step),
                    exc.detail,
                    aside[-1][1],
                )
            continue
        return Resumed(step, state, aside)
    if aside and manager.rank == 0:
        log.warning("no checkpoint under %s verifies; starting from step 0", manager.uri)
    if aside and optimizer is not None:
        optimizer.state.clear()  # a load initialises it (a zero step) before the data shows damage: start fresh
    return Resumed(0, {}, aside) if aside else None


def set_aside(store: ObjectStore, step: int, reason: str, now: float | None = None) -> str:
    """Move a step's checkpoint to `step-N.<reason>-<time>/` (objects first, manifest last, then the original
    is deleted manifest first), so nothing loads, prunes or overwrites it, and a person can still inspect it.
    Returns the new directory's URI. Crash-safe: an interrupted move leaves the original, or a partial original
    beside a complete copy."""
    source, target = step_dir(step), aside_dir(step, reason, time.time() if now is None else now)
    objects = sorted(store.list(f"{source}/"), key=lambda info: info.key.endswith(f"/{MANIFEST}"))
    for info in objects:
        copy_object(store, info.key, target + info.key[len(source) :])
    delete_step(store, step)
    return store.uri_for(target)


def remove_killed_saves(store: ObjectStore) -> list[int]:
    """Delete every partial step directory (no manifest) and sweep the store's temporary objects; returns the
    steps removed. Only for a root no other writer uses: the caller holds its lease, so a partial directory
    cannot be a save in progress."""
    found = scan(store)
    partial = sorted(step for step, complete in found.items() if not complete)
    for step in partial:
        delete_step(store, step)
        log.info("removed the partial checkpoint %s (a save that was killed)", store.uri_for(step_dir(step)))
    swept = store.sweep()
    if swept:
        log.info("removed %d temporary objects of interrupted writes under %s", swept, store.uri)
    if partial and not complete_steps(found):
        log.warning("%s holds no complete checkpoint, only killed saves", store.uri)
    return partial


def remove_dead_staging(staging_dir: str | None, rank: int) -> list[str]:
    """Remove this rank's staging folders whose process is gone (a killed save leaves gigabytes in $TMPDIR)."""
    parent = staging_dir or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    for name in names:
        match = _STAGING.match(name)
        if not match or int(match.group(2)) != rank or _alive(int(match.group(3))):
            continue
        shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


__all__ = ["Resumed", "remove_dead_staging", "remove_killed_saves", "resume_newest", "set_aside", "staging_prefix"]
