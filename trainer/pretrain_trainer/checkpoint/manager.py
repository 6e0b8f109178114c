"""The checkpoint manager: saves, finds, loads and prunes the checkpoints of one job, decides when a save is due,
and exports Hugging Face weights. Every rank of the process group holds one and calls each collective method.

Model and optimizer state go through `torch.distributed.checkpoint.state_dict.get_state_dict` /
`set_state_dict`, so a plain module, a DDP-wrapped one and an FSDP2 (`fully_shard`) one all work: DDP state is
saved without the `module.` prefix (DCP writes each replicated tensor once), FSDP2 state as DTensor shards.
The LR scheduler's `state_dict()` rides in the DCP payload under "scheduler" (DCP pickles non-tensor values);
loading reads such values only as plain data (tensors, numbers, strings, lists, dicts), which every torch
scheduler's state is, and never unpickles anything else (safe_load.py). With a signing key (signing.py) each
manifest is signed at save and verified before anything of the checkpoint is read.

DCP writes into a local staging directory (`$TMPDIR` unless `staging_dir` is given); each rank uploads its own
files. Loading downloads the DCP metadata and this rank's RNG file into a staging directory (always removed), then
only the data files its load plan reads (an FSDP rank's shards; all for DDP), each verified before it is read."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

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

from pretrain_trainer.checkpoint.agreement import agree, process_group_active, quiet_single_process
from pretrain_trainer.checkpoint.hf_export import unwrap, write_hf
from pretrain_trainer.checkpoint.layout import (
    DAMAGED_FIX,
    DCP_METADATA,
    MANIFEST,
    CheckpointCorrupt,
    CheckpointError,
    Entry,
    build_manifest,
    check_manifest,
    checked_trainer_state,
    complete_steps,
    delete_step,
    extra_name,
    hf_dir,
    known_good,
    load_objects,
    prune_plan,
    read_manifest,
    save_due,
    scan,
    step_dir,
)
from pretrain_trainer.checkpoint.recovery import (
    ManifestCheck,
    Resumed,
    remove_dead_staging,
    remove_killed_saves,
    resume_newest,
    set_aside,
    staging_prefix,
)
from pretrain_trainer.checkpoint.rng import rng_state, set_rng_state
from pretrain_trainer.checkpoint.safe_load import SafeFileSystemReader, SafeLoadPlanner, files_to_read, refusal_of
from pretrain_trainer.checkpoint.signing import CheckpointTampered, sign, signing_key_from_env, verify
from pretrain_trainer.checkpoint.transfer import Parts, download_all, download_parts, upload_dir
from pretrain_trainer.storage import ObjectStore, StorageOptions, open_store

log = logging.getLogger("pretrain_trainer.checkpoint")


class CheckpointManager:
    """Saves, finds, loads and prunes the checkpoints of one job under `uri` (s3://bucket/prefix or file://).

    `rank` and `world_size` must match the initialised process group if there is one; without a process group
    the manager works single-process (`world_size` 1) and skips every collective.

    Typical use, on every rank:

        ckpt = CheckpointManager(cfg.checkpoint.uri, options, keep=3, rank=rank, world_size=world_size,
                                 every_steps=cfg.checkpoint.every_steps)
        step = ckpt.latest()
        if step is not None:
            state = ckpt.load(step, model, optimizer, scheduler)  # the trainer_state given to save()
        ...
        if ckpt.due(step, final=last_step):
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
        every_steps: int = 0,
        staging_dir: str | None = None,
        signing_key: bytes | None = None,
    ) -> None:
        """`keep`: complete checkpoints `prune()` leaves. `every_steps`: the period `due()` follows (0: only the
        final save). `staging_dir`: where DCP files are staged (a fast local disk with room for one checkpoint
        shard per rank); default `tempfile.gettempdir()` ($TMPDIR). `signing_key`: the HMAC key manifests are
        signed with and checked against; default the one in $PRETRAIN_CHECKPOINT_SIGNING_KEY, if any."""
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep: must be an integer >= 1, got {keep!r}")
        if not isinstance(every_steps, int) or every_steps < 0:
            raise ValueError(f"every_steps: must be an integer >= 0, got {every_steps!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.distributed = process_group_active()
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
        self.every_steps = every_steps
        self.rank = rank
        self.world_size = world_size
        self.staging_dir = staging_dir
        self.signing_key = signing_key if signing_key is not None else signing_key_from_env()
        self.last_saved: int | None = None
        """The step this manager last saved or loaded: `due()` never asks for a second save of it."""
        self.fence: Callable[[], None] | None = None
        """Called on rank 0 right before a manifest is written; raising there keeps the checkpoint unpublished
        (the trainer renews its lease on the root here, so a run that lost the lease never publishes)."""

    # -- discovery

    def checkpoint_uri(self, step: int) -> str:
        """The URI of a step's checkpoint directory."""
        return self.store.uri_for(step_dir(step))

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return complete_steps(scan(self.store))

    def latest(self) -> int | None:
        """The newest step with a complete checkpoint, or None; partial (manifest-less) saves are ignored."""
        steps = self.steps()
        return steps[-1] if steps else None

    def manifest(self, step: int) -> dict[str, Any]:
        """The parsed MANIFEST.json of a step; CheckpointNotFound if that checkpoint is missing or partial."""
        return read_manifest(self.store, step)

    def resume(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
        *,
        floor: int | None = None,
        check: ManifestCheck | None = None,
    ) -> Resumed | None:
        """Load the newest checkpoint that verifies (all ranks call this; all load the same step); None when
        there is none. A damaged or newer-format one is set aside (`step-N.damaged-<time>/`, never deleted), with
        a warning, and the next older one is tried. `floor`: consider only steps >= floor, and raise instead of
        setting the floor's own checkpoint aside (a step the user picked). `check(manifest)` runs on the
        manifest before anything is downloaded: raising CheckpointUnusable there falls back too, any other
        exception ends the resume.
        """
        return resume_newest(self, model, optimizer, scheduler, floor=floor, check=check)

    def set_aside(self, step: int, reason: str) -> str:
        """Move a step's checkpoint to `step-N.<reason>-<time>/` (rank 0 moves, all ranks call); its new URI."""
        moved: list[str] = []
        self._on_rank0(self.checkpoint_uri(step), lambda: moved.append(set_aside(self.store, step, reason)))
        return moved[0] if moved else self.store.uri_for(f"{step_dir(step)}.{reason}")

    def clean_up(self) -> list[int]:
        """Remove the leftovers of killed saves: partial step directories and temporary objects (rank 0), and
        each rank's staging folders of dead processes. Call on all ranks, only while this run holds the root's
        lease (a partial directory is then never a save in progress). Returns the partial steps removed."""
        removed: list[int] = []
        self._on_rank0(self.uri, lambda: removed.extend(remove_killed_saves(self.store)))
        remove_dead_staging(self.staging_dir, self.rank)
        return removed

    def due(self, step: int, final: bool = False) -> bool:
        """Whether the trainer should save after `step`: every `every_steps` steps and at the end of the run
        (`final`), never twice at the same step. The same answer on every rank."""
        return save_due(step, self.every_steps, self.last_saved, final)

    # -- helpers

    def agree(self, error: BaseException | None, payload: Any = None) -> list[Any]:
        """Every rank's payload in rank order, or on every rank an error if one rank had one (a collective)."""
        return self._agree(self.uri, error, payload)

    def _agree(self, uri: str, error: BaseException | None, payload: Any = None, group: Any = None) -> list[Any]:
        return agree(uri, error, payload, distributed=self.distributed, world_size=self.world_size, group=group)

    def _on_rank0(self, uri: str, action: Callable[[], object], group: Any = None) -> None:
        """Run `action()` on rank 0 only, then agree: a failure there raises on every rank."""
        error: BaseException | None = None
        if self.rank == 0:
            try:
                action()
            except Exception as exc:
                error = exc
        self._agree(uri, error, group=group)

    @contextlib.contextmanager
    def _staging(self, what: str, step: int) -> Iterator[str]:
        path = tempfile.mkdtemp(prefix=staging_prefix(what, step, self.rank), dir=self.staging_dir)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def state_dict(self, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
        """What a checkpoint holds of the model, the optimizer and the scheduler (DCP's DDP/FSDP-aware view)."""
        state: dict[str, Any] = {}
        if optimizer is not None:
            state["model"], state["optim"] = get_state_dict(model, optimizer)
        else:
            state["model"] = get_model_state_dict(model)
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        return state

    # -- save

    def save(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
        trainer_state: dict[str, Any],
        *,
        known_good: bool = True,
    ) -> str:
        """Write the checkpoint of `step` (all ranks call this); returns its URI once it is complete. Saves model
        and optimizer state (DDP or FSDP2 aware), `scheduler.state_dict()`, each rank's RNG states and
        `trainer_state`, a JSON-able dict that `load()` returns. `known_good`: the step's loss and gradient norm
        were finite (pruning keeps the newest good ones). A checkpoint of the same step is replaced (its manifest
        goes first). Does not prune. (async_save.CheckpointSaver saves in the background.)"""
        state_json = checked_trainer_state(step, trainer_state)
        state = self.state_dict(model, optimizer, scheduler)
        return self.commit(step, state, rng_state(), state_json, known_good=known_good)

    def commit(
        self,
        step: int,
        state: dict[str, Any],
        rng: dict[str, Any],
        state_json: dict[str, Any],
        *,
        known_good: bool = True,
        group: Any = None,
    ) -> str:
        """Write `state` (from `state_dict()`, or a host copy of it) and `rng` as the checkpoint of `step`, MANIFEST
        last, after every rank uploaded its files. All ranks call it; its collectives run on `group` (default: the
        default group), so a background thread with a group of its own can commit while the loop trains."""
        uri = self.checkpoint_uri(step)
        started = time.monotonic()
        self._on_rank0(uri, lambda: delete_step(self.store, step), group)
        objects, staged = self._stage_and_upload(step, uri, state, rng, group)
        manifest = build_manifest(
            step,
            self.world_size,
            objects,
            state_json,
            has_optimizer="optim" in state,
            has_scheduler="scheduler" in state,
            created_unix=time.time(),
            torch_version=torch.__version__,
            known_good=known_good,
        )
        if self.signing_key is not None:
            manifest = sign(manifest, self.signing_key)
        manifest_bytes = json.dumps(manifest, indent=1).encode()
        self._on_rank0(uri, functools.partial(self._publish, step, manifest_bytes), group)
        if self.rank == 0:
            log.info(
                "checkpoint %s: %d objects, %.1f MiB in %.1fs (DCP files %.1fs)",
                uri,
                len(objects),
                sum(obj["size"] for obj in objects) / 2**20,
                time.monotonic() - started,
                staged - started,
            )
        self.last_saved = step
        return uri

    def _publish(self, step: int, manifest_bytes: bytes) -> None:
        if self.fence is not None:
            self.fence()
        self.store.write(f"{step_dir(step)}/{MANIFEST}", manifest_bytes)

    def _stage_and_upload(
        self, step: int, uri: str, state: dict[str, Any], rng: dict[str, Any], group: Any
    ) -> tuple[list[dict[str, Any]], float]:
        """DCP-save this rank's shard and RNG states to a staging directory and upload them; returns the manifest
        entries of every rank and when staging finished. Every rank raises if one rank's upload failed."""
        entries: list[Entry] = []
        error: BaseException | None = None
        with self._staging("save", step) as staging:
            with quiet_single_process():
                dcp.save(
                    state,
                    storage_writer=dcp.FileSystemWriter(staging, sync_files=False),
                    process_group=group,
                    no_dist=not self.distributed,
                )
            del state
            staged = time.monotonic()
            try:
                torch.save(rng, os.path.join(staging, extra_name(self.rank)))
                entries = upload_dir(self.store.child(step_dir(step)), staging)
            except Exception as exc:
                error = exc
        per_rank = self._agree(uri, error, [entry.as_dict() for entry in entries], group)
        return [obj for rank_entries in per_rank for obj in rank_entries], staged

    # -- load

    def load(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any | None,
        *,
        check: ManifestCheck | None = None,
    ) -> dict[str, Any]:
        """Restore the checkpoint of `step` into `model`, `optimizer` and `scheduler` (all ranks call this).

        Also restores this rank's RNG states (those of rank `min(rank, saved_world_size - 1)` when the world
        size changed) and returns the `trainer_state` given to `save()`. `optimizer` and `scheduler` may be
        None to load only the model. `check(manifest)` runs before anything is downloaded. Raises
        CheckpointNotFound for a missing or partial checkpoint and CheckpointCorrupt when an object the manifest
        lists is missing or damaged; nothing is restored then.
        """
        uri = self.checkpoint_uri(step)
        started = time.monotonic()
        with self._staging("load", step) as staging:
            manifest, source_rank, state, parts = self._fetch(step, uri, (model, optimizer, scheduler), staging, check)
            fetched = time.monotonic()
            reader, planner = SafeFileSystemReader(staging, parts), SafeLoadPlanner()
            try:
                with quiet_single_process():
                    dcp.load(state, storage_reader=reader, planner=planner, no_dist=not self.distributed)
            except (Exception, dcp.CheckpointException) as exc:  # the latter is a BaseException
                if (unsafe := refusal_of(reader, planner)) is not None:
                    raise CheckpointTampered(
                        uri,
                        f"resume refused: {unsafe}. No checkpoint this trainer writes holds that: someone wrote to "
                        "this prefix; investigate who can, then delete the checkpoint",
                    ) from None
                raise CheckpointError(
                    uri,
                    f"DCP could not load the checkpoint ({type(exc).__name__}: {exc}). If the model or optimizer "
                    f"changed since it was written, restore the old configuration; if its files are damaged, "
                    f"{DAMAGED_FIX}",
                ) from exc
            try:
                rng = torch.load(os.path.join(staging, extra_name(source_rank)), weights_only=True)
            except Exception as exc:
                raise CheckpointCorrupt(uri, f"{extra_name(source_rank)} is unreadable ({exc}); {DAMAGED_FIX}") from exc

        if optimizer is not None:
            set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        else:
            set_model_state_dict(model, state["model"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        set_rng_state(rng)
        if self.rank == 0:
            log.info(
                "loaded checkpoint %s in %.1fs (download %.1fs)", uri, time.monotonic() - started, fetched - started
            )
        self.last_saved = step
        trainer_state: dict[str, Any] = manifest["trainer_state"]
        return trainer_state

    def _fetch(
        self, step: int, uri: str, trainables: tuple[Any, Any, Any], staging: str, check: ManifestCheck | None
    ) -> tuple[dict[str, Any], int, dict[str, Any], Parts]:
        """Read and check the manifest; download the DCP metadata and this rank's RNG file, then the parts of the
        DCP data files this rank's load plan reads, into `staging`; agree on failure after each part. Returns the
        manifest, the rank whose RNG states this rank takes, the state dict (of `trainables`) and the `Parts`."""
        error: BaseException | None = None
        manifest: dict[str, Any] = {}
        source_rank, parts = 0, {}
        store = self.store.child(step_dir(step))
        try:
            manifest = self.manifest(step)
            verify(uri, manifest, self.signing_key)
            if check is not None:
                check(manifest)
            _, optimizer, scheduler = trainables
            source_rank = check_manifest(
                uri, manifest, optimizer is not None, scheduler is not None, self.rank, self.world_size
            )
            download_all(store, uri, load_objects(manifest, source_rank)[0], staging)
        except Exception as exc:
            error = exc
        self._agree(uri, error)
        state = self.state_dict(*trainables)  # after the checks: an optimizer without state takes a zero step
        try:
            reads = files_to_read(os.path.join(staging, DCP_METADATA), state)  # None: unplannable, read it all
            data = load_objects(manifest, source_rank, None if reads is None else set(reads))[1]
            parts = download_parts(store, uri, data, reads, staging)
        except Exception as exc:
            error = exc
        self._agree(uri, error)
        return manifest, source_rank, state, parts

    # -- prune

    def prune(self) -> list[int]:
        """Keep the newest `keep` known-good checkpoints (and any newer complete ones); delete older complete
        ones and partial ones older than the newest complete one (a newer partial one may be a save in
        progress). Returns the deleted steps.

        Only rank 0 deletes; on other ranks this is a no-op returning []. Safe to call on all ranks.
        """
        if self.rank != 0:
            return []
        found = scan(self.store)
        doomed = prune_plan(found, self.keep, {step for step in complete_steps(found) if self._known_good(step)})
        for step in doomed:
            delete_step(self.store, step)
            log.info("pruned checkpoint %s", self.checkpoint_uri(step))
        return doomed

    def _known_good(self, step: int) -> bool:
        try:
            return known_good(self.manifest(step))
        except CheckpointError:  # unreadable: not known to be good
            return False

    # -- export

    def export_hf(
        self,
        step: int,
        model: torch.nn.Module,
        tokenizer_uri: str | None = None,
        out_uri: str | None = None,
        parts: dict[str, str] | None = None,
    ) -> str:
        """Write `model`'s current weights in Hugging Face `save_pretrained` format; returns the output URI.

        `parts` writes submodules instead of the whole model: {folder under the output ("" for its root):
        attribute of the model}, e.g. ELECTRA's {"": "discriminator", "generator": "generator"}.

        Output goes to `out_uri`, default `<uri>/hf/step-00000100`: config.json, model.safetensors (sharded
        for big models), generation_config.json if any, and the tokenizer files from `tokenizer_uri` (a
        directory, or the URI of a tokenizer.json whose sibling tokenizer_config.json is copied too).

        Call on all ranks: the full state dict is gathered from DDP/FSDP2 (a collective for FSDP2), and only
        rank 0 writes.
        """
        out = out_uri if out_uri is not None else self.store.uri_for(hf_dir(step))
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        for folder, attribute in (parts or {"": ""}).items():
            sub_model = getattr(unwrap(model), attribute) if attribute else model
            sub_state = {k.removeprefix(f"{attribute}."): v for k, v in full.items() if k.startswith(f"{attribute}.")}
            sub_out = f"{out.rstrip('/')}/{folder}" if folder else out
            self._on_rank0(
                sub_out,
                functools.partial(
                    write_hf,
                    sub_model,
                    sub_state if attribute else full,
                    tokenizer_uri,
                    sub_out,
                    self.options,
                    self.staging_dir,
                ),
            )
        del full  # the gathered weights can be the size of the whole model: free them before returning
        return open_store(out, self.options).uri


__all__ = ["CheckpointManager"]
