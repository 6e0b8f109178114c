"""Checkpoints of a tiny GPT-2 against a real S3 endpoint on loopback and on file://: exact round trips of
model, optimizer, scheduler and RNG state, crash-safety through the manifest, pruning, a real 2-process gloo
group with DDP (and resuming it in one process), Hugging Face export, and the errors a broken checkpoint or an
unreachable store give.

The multi-process test runs this file as a script (`python test_checkpoint.py save|load ...`) for each rank.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from pretrain_trainer.checkpoint import (
    MANIFEST,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointManager,
    CheckpointNotFound,
    step_dir,
    transfer,
)
from pretrain_trainer.checkpoint.safe_load import load_metadata
from pretrain_trainer.storage import ObjectStore, StorageError, StorageOptions, open_store

VOCAB = 320
BATCH, SEQ = 4, 16


def tiny_model(seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(config)


def trainables(seed: int, model: torch.nn.Module | None = None) -> tuple[Any, Any, Any]:
    """(model, AdamW, warmup LambdaLR); `model` may be a DDP wrapper built by the caller."""
    model = model if model is not None else tiny_model(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))
    return model, optimizer, scheduler


def train(model: Any, optimizer: Any, scheduler: Any, steps: int, data_seed: int) -> list[float]:
    """Train `steps` steps on seeded random tokens; the losses."""
    gen = torch.Generator().manual_seed(data_seed)
    losses = []
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def seed_rngs(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def next_randoms() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(4)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def assert_same_params(
    a: torch.nn.Module | dict[str, torch.Tensor], b: torch.nn.Module | dict[str, torch.Tensor]
) -> None:
    sa = a if isinstance(a, dict) else unwrap(a).state_dict()
    sb = b if isinstance(b, dict) else unwrap(b).state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def assert_same_optimizer(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index, moments in a["state"].items():
        assert moments.keys() == b["state"][index].keys()
        for name, value in moments.items():
            assert torch.equal(value, b["state"][index][name]), (index, name)


TRAINER_STATE = {"loader": {"seed": 7, "samples_consumed": 96}, "tokens_seen": 1536, "config": {"lr": 1e-3}}


@pytest.fixture(params=["s3", "file"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, StorageOptions | None]:
    """A checkpoint root URI on each backend, with the options to reach it."""
    if request.param == "file":
        return (tmp_path / "ckpt").as_uri(), None
    return f"{request.getfixturevalue('s3_bucket')}/jobs/demo/checkpoints", request.getfixturevalue("s3_env")


def saved(root: tuple[str, StorageOptions | None], steps: list[int], keep: int = 3) -> CheckpointManager:
    manager = CheckpointManager(root[0], root[1], keep=keep)
    model, optimizer, scheduler = trainables(0)
    for step in steps:
        train(model, optimizer, scheduler, 1, data_seed=step)
        manager.save(step, model, optimizer, scheduler, {"step": step})
    return manager


# ----------------------------------------------------------------------------------------- round trip


def test_load_restores_parameters_optimizer_moments_scheduler_rng_and_trainer_state_exactly(root):
    manager = CheckpointManager(root[0], root[1])
    model, optimizer, scheduler = trainables(0)
    train(model, optimizer, scheduler, 3, data_seed=1)
    seed_rngs(1234)
    uri = manager.save(3, model, optimizer, scheduler, TRAINER_STATE)
    expected_randoms = next_randoms()

    assert uri == open_store(root[0], root[1]).uri_for("step-00000003")
    keys = {info.key for info in open_store(uri, root[1]).list()}
    assert {".metadata", "__0_0.distcp", "extra-rank0.pt", MANIFEST} <= keys

    fresh, fresh_optimizer, fresh_scheduler = trainables(99)
    seed_rngs(0)
    state = CheckpointManager(root[0], root[1]).load(3, fresh, fresh_optimizer, fresh_scheduler)
    got_randoms = next_randoms()

    assert state == TRAINER_STATE
    assert_same_params(model, fresh)
    assert_same_optimizer(optimizer.state_dict(), fresh_optimizer.state_dict())
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert fresh_scheduler.last_epoch == 3 and fresh_optimizer.param_groups[0]["lr"] == pytest.approx(4e-4)
    assert got_randoms[:2] == expected_randoms[:2]
    assert torch.equal(got_randoms[2], expected_randoms[2])

    # Training continues identically from the restored state (same dropout stream for both).
    torch.manual_seed(5)
    train(model, optimizer, scheduler, 2, data_seed=5)
    torch.manual_seed(5)
    train(fresh, fresh_optimizer, fresh_scheduler, 2, data_seed=5)
    assert_same_params(model, fresh)


def test_manifest_lists_every_object_with_size_and_the_trainer_state(root):
    manager = saved(root, [5])
    manifest = manager.manifest(5)
    assert manifest["step"] == 5 and manifest["world_size"] == 1 and manifest["format_version"] == 1
    assert manifest["trainer_state"] == {"step": 5}
    store = open_store(manager.checkpoint_uri(5), root[1])
    listed = {info.key: info.size for info in store.list() if info.key != MANIFEST}
    assert {obj["key"]: obj["size"] for obj in manifest["objects"]} == listed


def test_saving_a_step_again_replaces_the_old_checkpoint(root):
    manager = saved(root, [5, 5])
    assert manager.steps() == [5]
    assert manager.manifest(5)["trainer_state"] == {"step": 5}


# ---------------------------------------------------------------------------------- crash safety, prune


def simulate_crash_mid_save(manager: CheckpointManager, source_step: int, crashed_step: int) -> None:
    """Upload some of a checkpoint's files to `crashed_step`'s directory, but no manifest."""
    store = manager.store
    for key in (".metadata", "__0_0.distcp"):
        store.write(f"{step_dir(crashed_step)}/{key}", store.read(f"{step_dir(source_step)}/{key}"))


def test_latest_ignores_a_checkpoint_without_manifest_and_finds_a_newer_complete_one(root):
    manager = saved(root, [10])
    simulate_crash_mid_save(manager, 10, 20)
    assert manager.latest() == 10
    with pytest.raises(CheckpointNotFound, match=r"step-00000020: no complete checkpoint at step 20.*step 10"):
        manager.load(20, *trainables(0))

    model, optimizer, scheduler = trainables(0)
    manager.save(30, model, optimizer, scheduler, {})
    assert manager.latest() == 30
    assert CheckpointManager(root[0], root[1]).latest() == 30


def test_latest_is_none_for_an_empty_root(root):
    assert CheckpointManager(root[0], root[1]).latest() is None


def test_prune_keeps_the_newest_k_complete_checkpoints_and_drops_older_partial_ones(root):
    manager = saved(root, [1, 2, 3, 4], keep=2)
    simulate_crash_mid_save(manager, 1, 0)  # partial, older than the newest complete: goes
    simulate_crash_mid_save(manager, 1, 9)  # partial, newer: may be a save in progress, stays
    assert manager.prune() == [0, 1, 2]
    assert manager.steps() == [3, 4]
    dirs = {info.key.split("/")[0] for info in manager.store.list("step-")}
    assert dirs == {step_dir(3), step_dir(4), step_dir(9)}
    assert manager.prune() == []


def test_prune_on_a_nonzero_rank_deletes_nothing(tmp_path):
    root = ((tmp_path / "ckpt").as_uri(), None)
    saved(root, [1, 2], keep=1)
    manager = CheckpointManager(root[0], keep=1)
    manager.rank = 1  # as on rank 1 of a group; no collective is involved in prune
    assert manager.prune() == []
    assert manager.steps() == [1, 2]


# ----------------------------------------------------------------------------------------------- errors


def test_a_missing_object_listed_in_the_manifest_names_the_checkpoint_and_says_what_to_do(root):
    manager = saved(root, [7])
    manager.store.delete(f"{step_dir(7)}/__0_0.distcp")
    with pytest.raises(CheckpointCorrupt) as info:
        manager.load(7, *trainables(0))
    message = str(info.value)
    assert manager.checkpoint_uri(7) in message
    assert "__0_0.distcp" in message and "missing" in message
    assert "delete this checkpoint or resume from an earlier step" in message


def test_a_damaged_object_of_the_right_size_fails_its_checksum(root):
    manager = saved(root, [7])
    key = f"{step_dir(7)}/__0_0.distcp"
    data = bytearray(manager.store.read(key))
    data[len(data) // 2] ^= 0xFF
    manager.store.write(key, bytes(data))
    with pytest.raises(CheckpointCorrupt, match=r"__0_0\.distcp.*SHA-256.*delete this checkpoint"):
        manager.load(7, *trainables(0))


def test_a_load_fetches_and_verifies_only_the_blocks_it_reads_so_damage_elsewhere_is_never_read(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "VERIFY_BLOCK", 4096)  # these files are a few blocks of this size
    uri = (tmp_path / "ckpt").as_uri()
    model, optimizer, scheduler = trainables(0)
    train(model, optimizer, scheduler, 1, data_seed=1)
    CheckpointManager(uri).save(1, model, optimizer, scheduler, {"step": 1})
    step_path = tmp_path / "ckpt" / step_dir(1)

    # Damage a block that holds optimizer moments and nothing of the model.
    def blocks(info: Any) -> set[int]:
        return set(range(info.offset // 4096, -(-(info.offset + info.length) // 4096)))

    storage = load_metadata((step_path / ".metadata").read_bytes()).storage_data
    model_blocks = set().union(*(blocks(info) for index, info in storage.items() if index.fqn.startswith("model.")))
    moments = [info for index, info in storage.items() if index.fqn.endswith(".exp_avg_sq")]
    target = next(info for info in moments if not blocks(info) & model_blocks)
    data = bytearray((step_path / target.relative_path).read_bytes())
    data[target.offset + target.length // 2] ^= 0xFF
    (step_path / target.relative_path).write_bytes(bytes(data))
    damaged = min(blocks(target)) * 4096

    # Loading the model alone never reads the damaged block and restores the model exactly...
    fresh = tiny_model(1)
    manager = CheckpointManager(uri)
    with counting_reads(type(manager.store)) as reads:
        manager.load(1, fresh, None, None)
    assert_same_params(fresh, model)
    assert not any(start <= damaged < end for start, end in reads[target.relative_path])
    # ...and a load that needs it refuses the checkpoint.
    with pytest.raises(CheckpointCorrupt, match=rf"{target.relative_path}.*SHA-256 of its bytes.*delete this"):
        manager.load(1, *trainables(2))


def test_a_checkpoint_whose_manifest_has_no_block_hashes_is_fetched_whole_and_restored(tmp_path):
    """Checkpoints written before block hashes existed still resume: each file whole, against its SHA-256."""
    uri = (tmp_path / "ckpt").as_uri()
    model, optimizer, scheduler = trainables(0)
    train(model, optimizer, scheduler, 1, data_seed=1)
    CheckpointManager(uri).save(7, model, optimizer, scheduler, {"step": 7})
    manifest_path = tmp_path / "ckpt" / step_dir(7) / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for obj in manifest["objects"]:
        assert obj.pop("block_sha256") and obj.pop("block_size") == transfer.VERIFY_BLOCK
    manifest_path.write_text(json.dumps(manifest))

    fresh, fresh_optimizer, fresh_scheduler = trainables(1)
    assert CheckpointManager(uri).load(7, fresh, fresh_optimizer, fresh_scheduler) == {"step": 7}
    assert_same_params(fresh, model)
    assert_same_optimizer(fresh_optimizer.state_dict(), optimizer.state_dict())


def test_a_truncated_object_is_reported_as_damaged(root):
    manager = saved(root, [7])
    key = f"{step_dir(7)}/extra-rank0.pt"
    manager.store.write(key, manager.store.read(key)[:-10])
    with pytest.raises(CheckpointCorrupt, match=r"extra-rank0\.pt.*bytes instead of"):
        manager.load(7, *trainables(0))


def test_a_missing_bucket_surfaces_as_a_storage_error_naming_the_uri(s3_env):
    manager = CheckpointManager("s3://no-such-bucket-ckpt/run", s3_env)
    with pytest.raises(StorageError, match="s3://no-such-bucket-ckpt"):
        manager.latest()
    with pytest.raises(StorageError, match="s3://no-such-bucket-ckpt"):
        manager.save(1, *trainables(0), {})


def test_an_unreachable_endpoint_surfaces_as_a_storage_error_naming_the_uri(s3_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = s3_env.with_overrides(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout_s=1.0)
    with pytest.raises(StorageError, match="s3://unreachable-ckpt"):
        CheckpointManager("s3://unreachable-ckpt/run", options).latest()


def test_trainer_state_must_be_json_serialisable(tmp_path):
    manager = CheckpointManager(tmp_path.as_uri())
    with pytest.raises(TypeError, match="JSON"):
        manager.save(1, *trainables(0), {"tensor": torch.zeros(1)})
    assert manager.latest() is None


def test_a_scheduler_cannot_be_restored_from_a_checkpoint_saved_without_one(tmp_path):
    manager = CheckpointManager(tmp_path.as_uri())
    model, optimizer, _ = trainables(0)
    manager.save(1, model, optimizer, None, {})
    with pytest.raises(CheckpointError, match="no scheduler state"):
        manager.load(1, *trainables(0))
    fresh, fresh_optimizer, _ = trainables(1)
    manager.load(1, fresh, fresh_optimizer, None)
    assert_same_params(model, fresh)


# ------------------------------------------------------------------------------------------- HF export


def test_export_hf_loads_with_from_pretrained_and_gives_identical_logits(s3_bucket, s3_env, tmp_path):
    from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
    from tests.support.data import trained

    spec = TokenizerTrainingSpec(model="bpe", vocab_size=300)
    tokenizer_dir = f"{s3_bucket}/tokenizers/bpe"
    save_tokenizer(trained(spec), spec, tokenizer_dir, s3_env)
    manager = CheckpointManager(f"{s3_bucket}/jobs/demo/checkpoints", s3_env)
    model, optimizer, scheduler = trainables(0)
    train(model, optimizer, scheduler, 2, data_seed=3)

    out = manager.export_hf(2, model, tokenizer_dir)
    assert out == f"{s3_bucket}/jobs/demo/checkpoints/hf/step-00000002"
    store = open_store(out, s3_env)
    keys = {info.key for info in store.list()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= keys
    local = tmp_path / "hf"
    local.mkdir()
    for key in keys:
        (local / key).write_bytes(store.read(key))

    loaded = AutoModelForCausalLM.from_pretrained(local).eval()
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model.eval()(input_ids=ids).logits)
    tokenizer = AutoTokenizer.from_pretrained(local)
    assert tokenizer.decode(tokenizer("Grüße, world")["input_ids"]).endswith("Grüße, world")


def test_export_hf_to_a_given_file_uri(tmp_path):
    manager = CheckpointManager((tmp_path / "ckpt").as_uri())
    model = tiny_model(0)
    out = manager.export_hf(0, model, None, (tmp_path / "export").as_uri())
    assert out == (tmp_path / "export").as_uri()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    assert_same_params(model, loaded)


# -------------------------------------------------------------------------------------- multi-process

SAVE_STEP = 3
WORLD = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_group(mode: str, uri: str, outdir: Path, world_size: int = WORLD, timeout_s: float = 120) -> None:
    """Run this file as `world_size` gloo ranks; fail with every rank's output if one of them fails."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = dict(os.environ)  # carries the S3 endpoint and credentials that s3_env put there
        env.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, mode, uri, str(outdir)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout_s)[0])
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            outputs.append(proc.communicate()[0] + "\n<timed out>")
    codes = [proc.returncode for proc in procs]
    report = [
        f"--- rank {rank} exited {code}:\n{out[-4000:]}"
        for rank, (code, out) in enumerate(zip(codes, outputs, strict=True))
    ]
    assert codes == [0] * world_size, "\n".join(report)


@pytest.mark.slow
def test_ddp_and_fsdp2_checkpoints_from_two_gloo_ranks_resume_on_two_ranks_and_on_one(s3_bucket, s3_env, tmp_path):
    uri = f"{s3_bucket}/jobs/ddp/checkpoints"
    run_group("save", uri, tmp_path)
    for kind in ("ddp", "fsdp"):
        manifest = CheckpointManager(f"{uri}/{kind}", s3_env).manifest(SAVE_STEP)
        assert manifest["world_size"] == WORLD
        keys = {obj["key"] for obj in manifest["objects"]}
        assert {".metadata", "__0_0.distcp", "__1_0.distcp", "extra-rank0.pt", "extra-rank1.pt"} <= keys

    run_group("load", uri, tmp_path)
    # Each FSDP rank downloaded its own shards and little else of the data files; DDP ranks read nearly all.
    for kind in ("ddp", "fsdp"):
        manifest = CheckpointManager(f"{uri}/{kind}", s3_env).manifest(SAVE_STEP)
        sizes = {obj["key"]: obj["size"] for obj in manifest["objects"] if obj["key"].endswith(".distcp")}
        for rank in range(WORLD):
            counted = json.loads((tmp_path / f"reads-{kind}-rank{rank}.json").read_text())
            reads = {key: sum(end - start for start, end in ranges) for key, ranges in counted.items() if key in sizes}
            print(f"{kind} rank {rank} read {sum(reads.values())} of {sum(sizes.values())} DCP data bytes: {reads}")
            assert all(reads[key] <= sizes[key] for key in reads), (reads, sizes)  # no byte fetched twice
            own, other = f"__{rank}_0.distcp", f"__{1 - rank}_0.distcp"
            if kind == "fsdp":
                assert reads[own] > sizes[own] // 2 and reads.get(other, 0) < sizes[other] // 2, (rank, reads)
            else:
                assert sum(reads.values()) > sum(sizes.values()) * 0.9, (rank, reads)

    # World-size change: each 2-rank checkpoint in one process, without a process group.
    for kind in ("ddp", "fsdp"):
        expected = torch.load(tmp_path / f"expected-{kind}-rank0.pt", weights_only=True)
        model, optimizer, scheduler = trainables(42)
        state = CheckpointManager(f"{uri}/{kind}", s3_env).load(SAVE_STEP, model, optimizer, scheduler)
        assert state == worker_trainer_state()
        assert_same_params(model, expected["params"])
        if kind == "ddp":  # FSDP2's optimizer.state_dict() holds shards; the params prove the load
            assert_same_optimizer(optimizer.state_dict(), expected["optim"])
        assert scheduler.last_epoch == SAVE_STEP
        assert torch.equal(torch.rand(4), expected["rand"])  # rank 0's RNG stream

    # The FSDP2 model's export is whole: gathered from both ranks' shards.
    store = open_store(f"{uri}/fsdp/hf/{step_dir(SAVE_STEP)}", s3_env)
    local = tmp_path / "hf"
    local.mkdir()
    for info in store.list():
        (local / info.key).write_bytes(store.read(info.key))
    expected = torch.load(tmp_path / "expected-fsdp-rank0.pt", weights_only=True)
    assert_same_params(AutoModelForCausalLM.from_pretrained(local), expected["params"])


def worker_trainer_state() -> dict[str, Any]:
    return {"loader": {"seed": 7, "samples_consumed": SAVE_STEP * BATCH * WORLD}, "tokens_seen": 1234}


@contextlib.contextmanager
def counting_reads(store_type: type[ObjectStore]) -> Iterator[dict[str, list[tuple[int, int]]]]:
    """The byte ranges read through `store_type.read` per key (relative to the store read from) while it runs."""
    reads: dict[str, list[tuple[int, int]]] = {}
    original = store_type.read

    def read(store: ObjectStore, key: str, start: int | None = None, end: int | None = None) -> bytes:
        data = original(store, key, start, end)
        reads.setdefault(key, []).append((start or 0, (start or 0) + len(data)))
        return data

    with mock.patch.object(store_type, "read", read):
        yield reads


def worker(mode: str, uri: str, outdir: str) -> None:
    """One rank of the multi-process test: `save` trains and checkpoints a DDP and an FSDP2 model, `load`
    resumes both into fresh models and checks them against what `save` recorded."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP

    def ddp(seed: int) -> torch.nn.Module:
        return DDP(tiny_model(seed))

    def fsdp2(seed: int) -> torch.nn.Module:
        model = tiny_model(seed)
        for block in model.transformer.h:
            fully_shard(block)
        return fully_shard(model)

    def full(model: torch.nn.Module) -> dict[str, torch.Tensor]:  # collective for FSDP2
        return {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in unwrap(model).state_dict().items()}

    transfer.VERIFY_BLOCK = 4096  # blocks of a size that parts of these tiny files can be fetched in
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        for kind, wrap in (("ddp", ddp), ("fsdp", fsdp2)):
            manager = CheckpointManager(f"{uri}/{kind}", StorageOptions.from_env(), rank=rank, world_size=world_size)
            expected_path = os.path.join(outdir, f"expected-{kind}-rank{rank}.pt")
            if mode == "save":
                model, optimizer, scheduler = trainables(0, wrap(0))
                train(model, optimizer, scheduler, SAVE_STEP, data_seed=100 + rank)  # gradients are averaged
                seed_rngs(1000 + rank)
                manager.save(SAVE_STEP, model, optimizer, scheduler, worker_trainer_state())
                _, _, rand = next_randoms()
                if kind == "fsdp":
                    manager.export_hf(SAVE_STEP, model, None)
                expected = {"params": full(model), "optim": optimizer.state_dict(), "rand": rand}
                torch.save(expected, expected_path)
                losses = train(model, optimizer, scheduler, 2, data_seed=200 + rank)  # the uninterrupted run
                Path(outdir, f"losses-{kind}-rank{rank}.json").write_text(json.dumps(losses))
            else:
                assert manager.latest() == SAVE_STEP
                expected = torch.load(expected_path, weights_only=True)
                model, optimizer, scheduler = trainables(0, wrap(1 + rank))
                with counting_reads(type(manager.store)) as reads:
                    state = manager.load(SAVE_STEP, model, optimizer, scheduler)
                Path(outdir, f"reads-{kind}-rank{rank}.json").write_text(json.dumps(reads))
                assert state == worker_trainer_state(), state
                assert_same_params(full(model), expected["params"])
                if kind == "ddp":
                    assert_same_optimizer(optimizer.state_dict(), expected["optim"])
                assert scheduler.last_epoch == SAVE_STEP
                assert torch.equal(torch.rand(4), expected["rand"]), "RNG state not restored"
                # The resumed run goes on exactly as the uninterrupted one: optimizer moments included.
                losses = json.loads(Path(outdir, f"losses-{kind}-rank{rank}.json").read_text())
                assert train(model, optimizer, scheduler, 2, data_seed=200 + rank) == losses
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    worker(*sys.argv[1:4])
