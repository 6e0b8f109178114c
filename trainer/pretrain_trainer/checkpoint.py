"""Training checkpoints in object storage (s3:// or file://), written with `torch.distributed.checkpoint`.

Layout under the job's checkpoint URI:

    step-00000100/.metadata            DCP metadata (rank 0)
    step-00000100/__0_0.distcp         DCP data, one file per rank: model, optimizer and scheduler state
    step-00000100/__1_0.distcp
    step-00000100/extra-rank0.pt       per-rank RNG states (python `random`, numpy, torch CPU, torch CUDA)
    step-00000100/extra-rank1.pt
    step-00000100/MANIFEST.json        written last, by rank 0, once every rank finished uploading
    hf/step-00000100/                  `export_hf` output: config.json, model.safetensors, tokenizer files

A step directory without MANIFEST.json is a save that did not finish (a crash, a preempted pod): `latest()`
ignores it, `load()` refuses it and `prune()` eventually deletes it. The manifest lists every object of the
checkpoint with its size and SHA-256, and carries the caller's JSON-able trainer state (loader position, tokens
seen, config, ...), so a checkpoint is complete exactly when its manifest exists, and each object is verified
when it is downloaded.

Model and optimizer state go through `torch.distributed.checkpoint.state_dict.get_state_dict` /
`set_state_dict`, so a plain module, a DDP-wrapped one and an FSDP2 (`fully_shard`) one all work: DDP state is
saved without the `module.` prefix (DCP writes each replicated tensor once), FSDP2 state as DTensor shards.
The LR scheduler's `state_dict()` rides in the DCP payload under "scheduler" (DCP pickles non-tensor values),
so any scheduler works, JSON-able or not.

DCP writes into a local staging directory (under `$TMPDIR` unless `staging_dir` is given); each rank then
uploads its own files through the `ObjectStore`. Loading downloads the checkpoint's DCP files and this rank's
RNG file into a staging directory and DCP-loads from there. Staging directories are always removed.

Resuming with a different world size is supported for model, optimizer and scheduler state (DCP reshards on
load) and for the loader (its state is the global position, see `data.loader.LoaderState`). RNG states are
per rank; a rank that has no saved counterpart takes those of the last saved rank, `min(rank, saved - 1)`.

Every method that takes part in a save or load must be called on all ranks of the process group. Failures on
one rank are exchanged with the others before any further collective, so a storage error on one rank makes
every rank raise instead of leaving the rest waiting in a barrier.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from pretrain_trainer.storage import ObjectStore, StorageNotFound, StorageOptions, open_store, split_uri

log = logging.getLogger("pretrain_trainer.checkpoint")

FORMAT = "pretrain-trainer-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
HF_PREFIX = "hf"
TRANSFER_CHUNK = 16 * 1024 * 1024
TRANSFER_THREADS = 8
_STEP_DIR = re.compile(r"^step-(\d+)/")
_EXTRA = re.compile(r"^extra-rank(\d+)\.pt$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# --------------------------------------------------------------------------------------------- errors


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; `uri` names the checkpoint (or the checkpoint root).

    Storage faults (unreachable endpoint, missing permissions) are not wrapped: they surface as the storage
    layer's `StorageError`. Arguments stay `(uri, detail)` so the exception pickles across processes.
    """

    def __init__(self, uri: str, detail: str) -> None:
        super().__init__(uri, detail)
        self.uri = uri
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.uri}: {self.detail}"


class CheckpointNotFound(CheckpointError):
    """No complete checkpoint (one with a manifest) exists for the requested step."""


class CheckpointCorrupt(CheckpointError):
    """A complete checkpoint is damaged: its manifest is unreadable, or an object it lists is missing, has
    the wrong size or the wrong SHA-256."""


def step_dir(step: int) -> str:
    """The directory name of a step's checkpoint: `step-00000100`."""
    return f"step-{step:08d}"


def _extra_name(rank: int) -> str:
    return f"extra-rank{rank}.pt"


@dataclass(frozen=True)
class _Entry:
    key: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "sha256": self.sha256}


# ------------------------------------------------------------------------------------- RNG states


def _rng_state() -> dict[str, Any]:
    """This process's RNG states, in a form `torch.load(weights_only=True)` accepts."""
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["bit_generator"],
            npy["key"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        for device, device_state in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)


# ----------------------------------------------------------------------------------------- manager


class CheckpointManager:
    """Saves, finds, loads and prunes the checkpoints of one job under `uri` (s3://bucket/prefix or file://).

    `rank` and `world_size` must match the initialised process group if there is one; without a process group
    the manager works single-process (`world_size` 1) and skips every collective.

    Typical use, on every rank:

        ckpt = CheckpointManager(cfg.checkpoint.uri, options, keep=3, rank=rank, world_size=world_size)
        step = ckpt.latest()
        if step is not None:
            state = ckpt.load(step, model, optimizer, scheduler)  # the trainer_state given to save()
        ...
        ckpt.save(step, model, optimizer, scheduler, {"loader": loader.state().as_dict(), "tokens_seen": n})
        ckpt.prune()
    """

    def __init__(
        self,
        uri: str,
        options: StorageOptions | None = None,
        keep: int = 3,
        rank: int = 0,
        world_size: int = 1,
        *,
        staging_dir: str | None = None,
    ) -> None:
        """`keep`: complete checkpoints `prune()` leaves. `staging_dir`: where DCP files are staged (a fast
        local disk with room for one checkpoint shard per rank); default `tempfile.gettempdir()` ($TMPDIR)."""
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep: must be an integer >= 1, got {keep!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.distributed = dist.is_available() and dist.is_initialized()
        if self.distributed:
            if (rank, world_size) != (dist.get_rank(), dist.get_world_size()):
                raise ValueError(
                    f"CheckpointManager(rank={rank}, world_size={world_size}) does not match the process group "
                    f"(rank {dist.get_rank()} of {dist.get_world_size()})"
                )
        elif world_size != 1:
            raise ValueError(f"world_size={world_size} needs an initialised process group (torch.distributed)")
        self.options = options
        self.store: ObjectStore = open_store(uri, options)
        self.uri = self.store.uri
        self.keep = keep
        self.rank = rank
        self.world_size = world_size
        self.staging_dir = staging_dir

    # -- discovery

    def checkpoint_uri(self, step: int) -> str:
        """The URI of a step's checkpoint directory."""
        return self.store.uri_for(step_dir(step))

    def _scan(self) -> dict[int, bool]:
        """Every step directory under the root → whether it is complete (has a manifest)."""
        found: dict[int, bool] = {}
        for info in self.store.list("step-"):
            match = _STEP_DIR.match(info.key)
            if not match:
                continue
            step = int(match.group(1))
            if match.group(0) != step_dir(step) + "/":
                continue  # not a name this manager writes (step-1/, step-00x/): leave it alone
            complete = info.key == f"{step_dir(step)}/{MANIFEST}"
            found[step] = found.get(step, False) or complete
        return found

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return sorted(step for step, complete in self._scan().items() if complete)

    def latest(self) -> int | None:
        """The newest step with a complete checkpoint, or None; partial (manifest-less) saves are ignored."""
        steps = self.steps()
        return steps[-1] if steps else None

    def manifest(self, step: int) -> dict[str, Any]:
        """The parsed MANIFEST.json of a step; CheckpointNotFound if that checkpoint is missing or partial."""
        uri = self.checkpoint_uri(step)
        try:
            raw = self.store.read(f"{step_dir(step)}/{MANIFEST}")
        except StorageNotFound:
            latest = self.latest()
            hint = f"the newest complete checkpoint is step {latest}" if latest is not None else "there is none"
            raise CheckpointNotFound(uri, f"no complete checkpoint at step {step} (no {MANIFEST}); {hint}") from None
        try:
            manifest = json.loads(raw)
            if manifest.get("format") != FORMAT or not isinstance(manifest.get("objects"), list):
                raise ValueError("not a checkpoint manifest")
        except (ValueError, AttributeError) as exc:
            raise CheckpointCorrupt(
                uri, f"{MANIFEST} is unreadable ({exc}); delete this checkpoint or resume from an earlier step"
            ) from None
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                uri, f"checkpoint format version {version!r} is newer than this trainer reads ({FORMAT_VERSION})"
            )
        return manifest

    # -- collectives

    def _agree(self, uri: str, error: BaseException | None, payload: Any = None) -> list[Any]:
        """Exchange (failure, payload) between all ranks; every rank raises if any failed.

        The failing rank re-raises its own exception (a StorageError stays a StorageError); the others raise a
        CheckpointError naming it. Returns every rank's payload.
        """
        if not self.distributed:
            if error is not None:
                raise error
            return [payload]
        gathered: list[Any] = [None] * self.world_size
        mine = None if error is None else f"{type(error).__name__}: {error}"
        dist.all_gather_object(gathered, (mine, payload))
        if error is not None:
            raise error
        failed = [(rank, message) for rank, (message, _) in enumerate(gathered) if message is not None]
        if failed:
            rank, message = failed[0]
            raise CheckpointError(uri, f"rank {rank} failed: {message}")
        return [item for _, item in gathered]

    @contextlib.contextmanager
    def _staging(self, what: str, step: int) -> Iterator[str]:
        path = tempfile.mkdtemp(prefix=f"ckpt-{what}-{step_dir(step)}-rank{self.rank}-", dir=self.staging_dir)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    # -- save

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
        trainer_state: dict[str, Any],
    ) -> str:
        """Write the checkpoint of `step` (all ranks call this); returns its URI once it is complete.

        Saves model and optimizer state (DDP or FSDP2 aware), `scheduler.state_dict()`, each rank's RNG states,
        and `trainer_state`, a JSON-able dict that `load()` returns. An existing checkpoint of the same step is
        replaced (its manifest goes first, so it is never half-old, half-new and complete). Does not prune:
        call `prune()` afterwards.
        """
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step: must be an integer >= 0, got {step!r}")
        try:
            state_json = json.loads(json.dumps(trainer_state))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"trainer_state must be JSON-serialisable (plain dicts, lists, numbers, str): {exc}"
            ) from exc
        name = step_dir(step)
        uri = self.checkpoint_uri(step)
        started = time.monotonic()

        error: BaseException | None = None
        if self.rank == 0:
            try:
                self._delete_dir(name)
            except Exception as exc:
                error = exc
        self._agree(uri, error)

        state = self._state_dict(model, optimizer, scheduler)
        entries: list[_Entry] = []
        error = None
        with self._staging("save", step) as staging:
            with _quiet_single_process():
                dcp.save(
                    state,
                    storage_writer=dcp.FileSystemWriter(staging, sync_files=False),
                    no_dist=not self.distributed,
                )
            del state
            staged = time.monotonic()
            try:
                torch.save(_rng_state(), os.path.join(staging, _extra_name(self.rank)))
                entries = self._upload(self.store.child(name), staging)
            except Exception as exc:
                error = exc
        per_rank = self._agree(uri, error, [e.as_dict() for e in entries])

        error = None
        if self.rank == 0:
            objects = sorted((entry for rank_entries in per_rank for entry in rank_entries), key=lambda e: e["key"])
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "step": step,
                "world_size": self.world_size,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "created_unix": time.time(),
                "torch_version": torch.__version__,
                "has_optimizer": optimizer is not None,
                "has_scheduler": scheduler is not None,
                "objects": objects,
                "trainer_state": state_json,
            }
            try:
                self.store.write(f"{name}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
            except Exception as exc:
                error = exc
            total = sum(obj["size"] for obj in objects)
            if error is None:
                log.info(
                    "checkpoint %s: %d objects, %.1f MiB in %.1fs (DCP staging %.1fs)",
                    uri,
                    len(objects),
                    total / 2**20,
                    time.monotonic() - started,
                    staged - started,
                )
        self._agree(uri, error)
        return uri

    def _state_dict(self, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if optimizer is not None:
            state["model"], state["optim"] = get_state_dict(model, optimizer)
        else:
            state["model"] = get_model_state_dict(model)
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        return state

    def _upload(self, store: ObjectStore, staging: str) -> list[_Entry]:
        files: list[tuple[str, str]] = []
        for dirpath, _, filenames in os.walk(staging):
            for filename in filenames:
                path = os.path.join(dirpath, filename)
                files.append((os.path.relpath(path, staging).replace(os.sep, "/"), path))
        with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, max(1, len(files)))) as pool:
            return list(pool.map(lambda item: _upload_file(store, *item), sorted(files)))

    def _delete_dir(self, name: str) -> None:
        """Delete a step directory, manifest first, so an interrupted delete leaves a partial checkpoint."""
        objects = self.store.list(f"{name}/")
        for info in sorted(objects, key=lambda info: not info.key.endswith(f"/{MANIFEST}")):
            self.store.delete(info.key)

    # -- load

    def load(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
    ) -> dict[str, Any]:
        """Restore the checkpoint of `step` into `model`, `optimizer` and `scheduler` (all ranks call this).

        Also restores this rank's RNG states (those of rank `min(rank, saved_world_size - 1)` when the world
        size changed) and returns the `trainer_state` given to `save()`. `optimizer` and `scheduler` may be
        None to load only the model. Raises CheckpointNotFound for a missing or partial checkpoint and
        CheckpointCorrupt when an object the manifest lists is missing or damaged.
        """
        uri = self.checkpoint_uri(step)
        started = time.monotonic()
        with self._staging("load", step) as staging:
            error: BaseException | None = None
            manifest: dict[str, Any] = {}
            try:
                manifest = self.manifest(step)
                source_rank = self._check_manifest(uri, manifest, optimizer, scheduler)
                wanted = [
                    obj
                    for obj in manifest["objects"]
                    if not _EXTRA.match(obj["key"]) or obj["key"] == _extra_name(source_rank)
                ]
                _download_all(self.store.child(step_dir(step)), uri, wanted, staging)
            except Exception as exc:
                error = exc
            self._agree(uri, error)
            fetched = time.monotonic()

            state = self._state_dict(model, optimizer, scheduler)
            try:
                with _quiet_single_process():
                    dcp.load(state, storage_reader=dcp.FileSystemReader(staging), no_dist=not self.distributed)
            except Exception as exc:
                raise CheckpointError(
                    uri,
                    f"DCP could not load the checkpoint ({type(exc).__name__}: {exc}). If the model or optimizer "
                    f"changed since it was written, restore the old configuration; if its files are damaged, delete "
                    f"this checkpoint or resume from an earlier step",
                ) from exc
            try:
                rng = torch.load(os.path.join(staging, _extra_name(source_rank)), weights_only=True)
            except Exception as exc:
                raise CheckpointCorrupt(
                    uri,
                    f"{_extra_name(source_rank)} is unreadable ({exc}); delete this checkpoint or resume from an "
                    f"earlier step",
                ) from exc

        if optimizer is not None:
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        else:
            set_model_state_dict(model, state["model"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(rng)
        if self.rank == 0:
            log.info(
                "loaded checkpoint %s in %.1fs (download %.1fs)",
                uri,
                time.monotonic() - started,
                fetched - started,
            )
        trainer_state: dict[str, Any] = manifest["trainer_state"]
        return trainer_state

    def _check_manifest(self, uri: str, manifest: dict[str, Any], optimizer: Any, scheduler: Any) -> int:
        """Validate what load() needs from the manifest; returns the rank whose RNG states this rank takes."""
        saved_world = int(manifest["world_size"])
        if scheduler is not None and not manifest.get("has_scheduler"):
            raise CheckpointError(uri, "the checkpoint holds no scheduler state; pass scheduler=None")
        if optimizer is not None and not manifest.get("has_optimizer"):
            raise CheckpointError(uri, "the checkpoint holds no optimizer state; pass optimizer=None")
        source_rank = min(self.rank, saved_world - 1)
        if not any(obj["key"] == _extra_name(source_rank) for obj in manifest["objects"]):
            raise CheckpointCorrupt(
                uri,
                f"{MANIFEST} lists no {_extra_name(source_rank)}; delete this checkpoint or resume from an "
                "earlier step",
            )
        if saved_world != self.world_size and self.rank == 0:
            log.info(
                "checkpoint %s was written by %d ranks, resuming with %d: model, optimizer and loader state carry "
                "over; ranks without a saved counterpart take the RNG states of rank %d",
                uri,
                saved_world,
                self.world_size,
                saved_world - 1,
            )
        return source_rank

    # -- prune

    def prune(self) -> list[int]:
        """Keep the newest `keep` complete checkpoints; delete older complete ones and partial ones older than
        the newest complete one (a newer partial one may be a save in progress). Returns the deleted steps.

        Only rank 0 deletes; on other ranks this is a no-op returning []. Safe to call on all ranks.
        """
        if self.rank != 0:
            return []
        found = self._scan()
        complete = sorted(step for step, done in found.items() if done)
        if not complete:
            return []
        kept = set(complete[-self.keep :])
        newest = complete[-1]
        doomed = sorted(step for step, done in found.items() if step not in kept and (done or step < newest))
        for step in doomed:
            self._delete_dir(step_dir(step))
            log.info("pruned checkpoint %s", self.checkpoint_uri(step))
        return doomed

    # -- export

    def export_hf(
        self,
        step: int,
        model: torch.nn.Module,
        tokenizer_uri: str | None = None,
        out_uri: str | None = None,
    ) -> str:
        """Write `model`'s current weights in Hugging Face `save_pretrained` format; returns the output URI.

        Output goes to `out_uri`, default `<uri>/hf/step-00000100`: config.json, model.safetensors (sharded
        for big models), generation_config.json if any, and the tokenizer files from `tokenizer_uri` (a
        directory, or the URI of a tokenizer.json whose sibling tokenizer_config.json is copied too), so
        `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` read it directly.

        Call on all ranks: the full state dict is gathered from DDP/FSDP2 (a collective for FSDP2), and only
        rank 0 writes.
        """
        out = out_uri if out_uri is not None else self.store.uri_for(f"{HF_PREFIX}/{step_dir(step)}")
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        error: BaseException | None = None
        if self.rank == 0:
            try:
                self._write_hf(model, full, tokenizer_uri, out)
            except Exception as exc:
                error = exc
        del full
        self._agree(out, error)
        return open_store(out, self.options).uri

    def _write_hf(self, model: torch.nn.Module, full: dict[str, Any], tokenizer_uri: str | None, out: str) -> None:
        started = time.monotonic()
        inner = model
        while True:  # DDP (.module), torch.compile (._orig_mod); FSDP2 keeps the class
            nxt = getattr(inner, "module", None) or getattr(inner, "_orig_mod", None)
            if not isinstance(nxt, torch.nn.Module):
                break
            inner = nxt
        if not hasattr(inner, "save_pretrained"):
            raise TypeError(f"export_hf needs a transformers PreTrainedModel, got {type(inner).__name__}")
        out_store = open_store(out, self.options)
        with tempfile.TemporaryDirectory(prefix="hf-export-", dir=self.staging_dir) as tmp:
            inner.save_pretrained(tmp, state_dict=full)
            if tokenizer_uri:
                _copy_tokenizer(tokenizer_uri, self.options, tmp)
            entries = self._upload(out_store, tmp)
        log.info(
            "exported %s: %s in %.1fs",
            out_store.uri,
            ", ".join(entry.key for entry in entries),
            time.monotonic() - started,
        )


# --------------------------------------------------------------------------------------- transfers


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns on every single-process save/load that it assumes single-process; that is the intent here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.distributed is .*assuming the intent", category=UserWarning)
        yield


def _upload_file(store: ObjectStore, key: str, path: str) -> _Entry:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle, store.open_writer(key) as writer:
        while chunk := handle.read(TRANSFER_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    return _Entry(key, size, digest.hexdigest())


def _download_all(store: ObjectStore, uri: str, objects: list[dict[str, Any]], staging: str) -> None:
    """Fetch `objects` (manifest entries) into `staging` with parallel ranged reads, verifying size and hash."""

    def corrupt(key: str, what: str) -> CheckpointCorrupt:
        return CheckpointCorrupt(
            uri,
            f"{key}, listed in {MANIFEST}, {what}; the checkpoint is damaged: delete this checkpoint or resume "
            f"from an earlier step",
        )

    jobs: list[tuple[str, str, int, int]] = []
    for obj in objects:
        key, size = obj["key"], int(obj["size"])
        try:
            actual = store.size(key)
        except StorageNotFound:
            raise corrupt(key, "is missing") from None
        if actual != size:
            raise corrupt(key, f"has {actual} bytes instead of {size}")
        path = os.path.join(staging, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(size)
        jobs.extend((key, path, start, min(start + TRANSFER_CHUNK, size)) for start in range(0, size, TRANSFER_CHUNK))

    def fetch(job: tuple[str, str, int, int]) -> None:
        key, path, start, end = job
        try:
            data = store.read(key, start, end)
        except StorageNotFound:
            raise corrupt(key, "is missing") from None
        if len(data) != end - start:
            raise corrupt(key, f"is shorter than {end} bytes")
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, start)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:
        for _ in pool.map(fetch, jobs):
            pass
    for obj in objects:
        expected = obj.get("sha256")
        if expected and _sha256_file(os.path.join(staging, *obj["key"].split("/"))) != expected:
            raise corrupt(obj["key"], "does not match its SHA-256")


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(TRANSFER_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_tokenizer(tokenizer_uri: str, options: StorageOptions | None, dest: str) -> None:
    """Copy the tokenizer files into `dest`: every top-level file of a directory, or a tokenizer.json and
    the known tokenizer files beside it."""
    if tokenizer_uri.endswith(".json"):
        root, name = split_uri(tokenizer_uri)
        store = open_store(root, options)
        names = [name, *(n for n in _TOKENIZER_FILES if n != name and store.exists(n))]
    else:
        store = open_store(tokenizer_uri, options)
        names = [info.key for info in store.list("") if "/" not in info.key]
        if not names:
            raise StorageNotFound(store.uri, "no tokenizer files here; pass the directory holding tokenizer.json")
    for name in names:
        with open(os.path.join(dest, name), "wb") as handle:
            handle.write(store.read(name))


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointNotFound",
    "step_dir",
]
