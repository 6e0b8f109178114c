"""Training checkpoints in object storage (s3:// or file://), written with `torch.distributed.checkpoint`.

    layout.py      names under the checkpoint URI, the manifest, scanning, and the pure policies (prune, save due)
    transfer.py    uploads that hash as they go, ranged downloads verified against the manifest
    rng.py         per-rank RNG states
    agreement.py   the cross-rank failure exchange every collective step ends with
    hf_export.py   Hugging Face `save_pretrained` output with the tokenizer files
    safe_load.py   DCP reading that never runs code from the bucket (restricted metadata unpickler, plain data)
    signing.py     HMAC signatures on manifests, checked before anything of a checkpoint is read
    manager.py     CheckpointManager: save, load, prune, due, export_hf

A step directory without MANIFEST.json is a save that did not finish (a crash, a preempted pod): `latest()`
ignores it, `load()` refuses it and `prune()` eventually deletes it. The manifest lists every object of the
checkpoint with its size and SHA-256, and carries the caller's JSON-able trainer state (loader position, tokens
seen, config, ...), so a checkpoint is complete exactly when its manifest exists, and each object is verified
when it is downloaded.

Resuming with a different world size is supported for model, optimizer and scheduler state (DCP reshards on
load) and for the loader (its state is the global position, see `data.loader.LoaderState`). RNG states are
per rank; a rank that has no saved counterpart takes those of the last saved rank, `min(rank, saved - 1)`.

Every method that takes part in a save or load must be called on all ranks of the process group. Failures on
one rank are exchanged with the others before any further collective, so a storage error on one rank makes
every rank raise instead of leaving the rest waiting in a barrier.
"""

from pretrain_trainer.checkpoint.layout import (
    FORMAT_VERSION,
    MANIFEST,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    prune_plan,
    save_due,
    step_dir,
)
from pretrain_trainer.checkpoint.manager import CheckpointManager
from pretrain_trainer.checkpoint.signing import CheckpointTampered

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointNotFound",
    "CheckpointTampered",
    "prune_plan",
    "save_due",
    "step_dir",
]
