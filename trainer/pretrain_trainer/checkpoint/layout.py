"""Where a checkpoint's files live under the job's checkpoint URI, what its manifest holds, and the pure policies
over what a scan finds (which steps are complete, which to prune, when the next save is due). Torch-free.

    step-00000100/.metadata            DCP metadata (rank 0)
    step-00000100/__0_0.distcp         DCP data, one file per rank: model, optimizer and scheduler state; a rank
                                       resuming fetches only the blocks (each hashed in the manifest) it reads
    step-00000100/extra-rank0.pt       per-rank RNG states
    step-00000100/MANIFEST.json        written last, by rank 0, once every rank finished uploading
    step-00000080.damaged-20261202T014500Z/     a checkpoint that failed verification on resume, set aside
    step-00000120.superseded-20261202T020000Z/  a newer checkpoint set aside by checkpoint.resumeFrom
    hf/step-00000100/                  Hugging Face export

A step directory is complete exactly when its MANIFEST.json exists. Set-aside directories are kept for people
to inspect: nothing here scans, loads, prunes or deletes them.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pretrain_trainer.errors import UriError
from pretrain_trainer.storage import ObjectStore, StorageNotFound

log = logging.getLogger("pretrain_trainer.checkpoint")

FORMAT = "pretrain-trainer-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
DCP_METADATA = ".metadata"
HF_PREFIX = "hf"
_STEP_DIR = re.compile(r"^step-(\d+)/")
_EXTRA = re.compile(r"^extra-rank(\d+)\.pt$")

# What an operator does about a damaged checkpoint; every CheckpointCorrupt message ends with it.
DAMAGED_FIX = "delete this checkpoint or resume from an earlier step"


# --------------------------------------------------------------------------------------------- errors


class CheckpointError(UriError, RuntimeError):
    """A checkpoint could not be written or read; `uri` names the checkpoint (or the checkpoint root).

    Storage faults (unreachable endpoint, missing permissions) are not wrapped: they surface as the storage
    layer's `StorageError`, the sibling under `UriError`. Stays a RuntimeError for callers that catch that.
    """


class CheckpointNotFound(CheckpointError):
    """No complete checkpoint (one with a manifest) exists for the requested step."""


class CheckpointUnusable(CheckpointError):
    """A complete checkpoint that cannot be resumed from as it is: damaged, or written in a newer format. Resuming
    sets it aside and falls back to the newest earlier checkpoint that verifies."""


class CheckpointCorrupt(CheckpointUnusable):
    """A complete checkpoint is damaged: its manifest is unreadable, or an object it lists is missing, has
    the wrong size or the wrong SHA-256."""


class CheckpointFormatTooNew(CheckpointUnusable):
    """A checkpoint written by a newer trainer, in a format this one does not read."""


# ---------------------------------------------------------------------------------------------- names


def step_dir(step: int) -> str:
    """The directory name of a step's checkpoint: `step-00000100`."""
    return f"step-{step:08d}"


def extra_name(rank: int) -> str:
    """The file holding a rank's non-DCP state (RNG states)."""
    return f"extra-rank{rank}.pt"


def is_extra(key: str) -> bool:
    return _EXTRA.match(key) is not None


def load_objects(
    manifest: dict[str, Any], source_rank: int, data_files: set[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manifest entries a rank downloads to load a checkpoint, in two parts: first the DCP metadata and the
    RNG file of `source_rank`, then the DCP data files named in `data_files` (its load plan; None: all)."""
    first, data = [], []
    for obj in manifest["objects"]:
        key = obj["key"]
        if key in (DCP_METADATA, extra_name(source_rank)):
            first.append(obj)
        elif not is_extra(key) and key != MANIFEST and (data_files is None or key in data_files):
            data.append(obj)
    return first, data


def hf_dir(step: int) -> str:
    """Where `export_hf` writes a step's Hugging Face export, relative to the checkpoint root."""
    return f"{HF_PREFIX}/{step_dir(step)}"


def aside_dir(step: int, reason: str, unix: float) -> str:
    """Where a checkpoint set aside for `reason` ("damaged", "superseded") at `unix` time goes. The suffix keeps
    it out of `scan` (and so out of loading and pruning) and frees the step's own name for a new save."""
    return f"{step_dir(step)}.{reason}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(unix))}"


@dataclass(frozen=True)
class Entry:
    """One uploaded object of a checkpoint, as the manifest lists it."""

    key: str
    size: int
    sha256: str
    block_size: int = 0
    block_sha256: tuple[str, ...] = ()
    """The SHA-256 of each `block_size` bytes, so that a rank can fetch and verify only the parts it reads."""

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"key": self.key, "size": self.size, "sha256": self.sha256}
        if self.block_sha256:
            entry.update(block_size=self.block_size, block_sha256=list(self.block_sha256))
        return entry


# -------------------------------------------------------------------------------------------- scanning


def scan(store: ObjectStore) -> dict[int, bool]:
    """Every step directory under the store's root → whether it is complete (has a manifest).

    Directories whose name this package does not write (step-1/, step-00x/) are left out, so nothing acts on them.
    """
    found: dict[int, bool] = {}
    for info in store.list("step-"):
        match = _STEP_DIR.match(info.key)
        if not match:
            continue
        step = int(match.group(1))
        if match.group(0) != step_dir(step) + "/":
            continue
        complete = info.key == f"{step_dir(step)}/{MANIFEST}"
        found[step] = found.get(step, False) or complete
    return found


def complete_steps(found: dict[int, bool]) -> list[int]:
    """The complete steps of a scan, oldest first."""
    return sorted(step for step, complete in found.items() if complete)


def prune_plan(found: dict[int, bool], keep: int, good: set[int] | None = None) -> list[int]:
    """The steps to delete so that the newest `keep` known-good checkpoints remain (oldest first).

    `good`: the complete steps known to be good (finite loss and gradient norm at their step); None: all of them.
    A checkpoint is never pruned in favour of a newer one that is not known to be good: the newest `keep` good
    ones stay, and so does every complete one newer than the newest good one. Older complete checkpoints go, and
    so do partial ones older than the newest complete one (crashed saves). A partial checkpoint newer than every
    complete one may be a save in progress and is never chosen; with no complete checkpoint nothing is chosen.
    """
    if keep < 1:
        raise ValueError(f"keep: must be an integer >= 1, got {keep!r}")
    complete = complete_steps(found)
    if not complete:
        return []
    known = [step for step in complete if good is None or step in good]
    kept = set(known[-keep:]) | {step for step in complete if not known or step > known[-1]}
    newest = complete[-1]
    return sorted(step for step, done in found.items() if step not in kept and (done or step < newest))


def save_due(step: int, every_steps: int, last_saved: int | None, final: bool = False) -> bool:
    """Whether to checkpoint after `step`: every `every_steps` steps and at the end of a run (`final`), but never
    twice at the same step (a resumed run does not rewrite the checkpoint it started from)."""
    if step == last_saved:
        return False
    return final or (every_steps > 0 and step % every_steps == 0)


# -------------------------------------------------------------------------------------------- manifest


def build_manifest(
    step: int,
    world_size: int,
    objects: list[dict[str, Any]],
    trainer_state: dict[str, Any],
    *,
    has_optimizer: bool,
    has_scheduler: bool,
    created_unix: float,
    torch_version: str,
    known_good: bool = True,
) -> dict[str, Any]:
    """The MANIFEST.json document of a complete checkpoint: every object sorted by key, and the caller's state.
    `known_good`: the loss and gradient norm of this step were finite (pruning keeps the newest good ones)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "world_size": world_size,
        "created": datetime.fromtimestamp(created_unix, timezone.utc).isoformat(timespec="seconds"),
        "created_unix": created_unix,
        "torch_version": torch_version,
        "has_optimizer": has_optimizer,
        "has_scheduler": has_scheduler,
        "known_good": known_good,
        "objects": sorted(objects, key=lambda obj: obj["key"]),
        "trainer_state": trainer_state,
    }


def read_manifest(store: ObjectStore, step: int) -> dict[str, Any]:
    """The parsed MANIFEST.json of a step under `store` (the checkpoint root).

    CheckpointNotFound if the checkpoint is missing or partial (naming the newest complete one),
    CheckpointCorrupt if the manifest is unreadable, CheckpointError if its format is newer than this code reads.
    """
    uri = store.uri_for(step_dir(step))
    try:
        raw = store.read(f"{step_dir(step)}/{MANIFEST}")
    except StorageNotFound:
        complete = complete_steps(scan(store))
        hint = f"the newest complete checkpoint is step {complete[-1]}" if complete else "there is none"
        raise CheckpointNotFound(uri, f"no complete checkpoint at step {step} (no {MANIFEST}); {hint}") from None
    try:
        manifest = json.loads(raw)
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("objects"), list):
            raise ValueError("not a checkpoint manifest")
    except (ValueError, AttributeError) as exc:
        raise CheckpointCorrupt(uri, f"{MANIFEST} is unreadable ({exc}); {DAMAGED_FIX}") from None
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointFormatTooNew(
            uri,
            f"checkpoint format version {version!r} is newer than this trainer reads ({FORMAT_VERSION}); run a "
            "trainer image that reads it, or resume from an earlier step",
        )
    return manifest


def known_good(manifest: dict[str, Any]) -> bool:
    """Whether a manifest says its step's loss and gradient norm were finite (manifests from before the field
    existed say nothing, so they are not known to be good)."""
    return manifest.get("known_good") is True


def delete_step(store: ObjectStore, step: int) -> None:
    """Delete a step directory, manifest first, so an interrupted delete leaves a partial checkpoint."""
    name = step_dir(step)
    objects = store.list(f"{name}/")
    for info in sorted(objects, key=lambda info: not info.key.endswith(f"/{MANIFEST}")):
        store.delete(info.key)


def check_manifest(
    uri: str, manifest: dict[str, Any], optimizer: bool, scheduler: bool, rank: int, world_size: int
) -> int:
    """What load() needs from a manifest, for a load with/without `optimizer` and `scheduler` by `rank` of
    `world_size`; returns the rank whose RNG states that rank takes (the last saved rank when the world grew)."""
    saved_world = int(manifest["world_size"])
    if scheduler and not manifest.get("has_scheduler"):
        raise CheckpointError(uri, "the checkpoint holds no scheduler state; pass scheduler=None")
    if optimizer and not manifest.get("has_optimizer"):
        raise CheckpointError(uri, "the checkpoint holds no optimizer state; pass optimizer=None")
    source_rank = min(rank, saved_world - 1)
    if not any(obj["key"] == extra_name(source_rank) for obj in manifest["objects"]):
        raise CheckpointCorrupt(uri, f"{MANIFEST} lists no {extra_name(source_rank)}; {DAMAGED_FIX}")
    if saved_world != world_size and rank == 0:
        log.info(
            "checkpoint %s was written by %d ranks, resuming with %d: model, optimizer and loader state carry "
            "over; ranks without a saved counterpart take the RNG states of rank %d",
            uri,
            saved_world,
            world_size,
            saved_world - 1,
        )
    return source_rank


def checked_trainer_state(step: int, trainer_state: dict[str, Any]) -> dict[str, Any]:
    """`trainer_state` as the manifest will hold it; ValueError/TypeError for a bad step or a non-JSON state."""
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step: must be an integer >= 0, got {step!r}")
    try:
        return json.loads(json.dumps(trainer_state))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"trainer_state must be JSON-serialisable (plain dicts, lists, numbers, str): {exc}") from exc
