"""Resume against a hostile checkpoint bucket: whoever can write under the checkpoint prefix must not get code run
in the training processes, and with a signing key every change is detected before any file of the checkpoint is
read. Each attack rewrites the manifest too (sizes and SHA-256), as an attacker with write access would.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from transformers import GPT2Config, GPT2LMHeadModel

from pretrain_trainer.checkpoint import MANIFEST, CheckpointManager, step_dir
from pretrain_trainer.checkpoint.agreement import quiet_single_process
from pretrain_trainer.checkpoint.safe_load import (
    MetadataUnpickler,
    SafeFileSystemReader,
    SafeLoadPlanner,
    UnsafeCheckpoint,
    files_to_read,
    load_metadata,
)
from pretrain_trainer.checkpoint.signing import SIGNING_KEY_ENV, CheckpointTampered, signing_key_from_env

KEY = b"0123456789abcdef-test-signing-key"


class WritesMarker:
    """Unpickling this opens (creates) the marker file: the smallest proof that a load ran attacker code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


class HostileScheduler:
    """A scheduler whose state holds an object that runs code when unpickled (written as a legitimate save)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def state_dict(self) -> dict[str, Any]:
        return {"last_epoch": 3, "payload": WritesMarker(self.marker)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def tiny() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ids = torch.zeros(1, 4, dtype=torch.long)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def replace_object(step_path: Path, key: str, data: bytes) -> None:
    """Overwrite one checkpoint object and fix its size and SHA-256s in the manifest, signature left as it was."""
    (step_path / key).write_bytes(data)
    manifest_path = step_path / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for obj in manifest["objects"]:
        if obj["key"] == key:
            obj["size"], obj["sha256"] = len(data), hashlib.sha256(data).hexdigest()
            block = obj["block_size"]
            obj["block_sha256"] = [hashlib.sha256(data[i : i + block]).hexdigest() for i in range(0, len(data), block)]
    manifest_path.write_text(json.dumps(manifest))


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[str, Path]:
    """A complete unsigned checkpoint of step 1 (file://) and its step folder."""
    root = tmp_path / "ckpt"
    CheckpointManager(root.as_uri(), signing_key=None).save(1, *tiny(), {"step": 1})
    return root.as_uri(), root / step_dir(1)


def test_resume_refuses_a_crafted_metadata_pickle_and_runs_none_of_it(checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    uri, step_path = checkpoint
    marker = tmp_path / "pwned"
    replace_object(step_path, ".metadata", pickle.dumps(WritesMarker(marker)))

    with pytest.raises(CheckpointTampered, match=r"resume refused: DCP metadata refers to io\.open"):
        CheckpointManager(uri).load(1, *tiny())
    assert not marker.exists()


def test_resume_refuses_a_non_tensor_value_that_is_not_plain_data(tmp_path, monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    marker = tmp_path / "pwned"
    model, optimizer, _ = tiny()
    uri = (tmp_path / "ckpt").as_uri()
    CheckpointManager(uri).save(1, model, optimizer, HostileScheduler(marker), {"step": 1})
    assert not marker.exists()

    with pytest.raises(CheckpointTampered, match=r"scheduler\.payload is not plain data"):
        CheckpointManager(uri).load(1, model, optimizer, HostileScheduler(marker))
    assert not marker.exists()


def test_resume_refuses_metadata_that_points_outside_the_checkpoint(checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    uri, step_path = checkpoint
    metadata = load_metadata((step_path / ".metadata").read_bytes())
    for info in metadata.storage_data.values():
        info.relative_path = "../../outside.distcp"
    replace_object(step_path, ".metadata", pickle.dumps(metadata))

    with pytest.raises(CheckpointTampered, match=r"points at '\.\./\.\./outside\.distcp', outside the checkpoint"):
        CheckpointManager(uri).load(1, *tiny())


def test_the_metadata_unpickler_admits_real_metadata_and_nothing_else(checkpoint):
    _, step_path = checkpoint
    real = load_metadata((step_path / ".metadata").read_bytes())
    assert real.state_dict_metadata  # a real DCP save loads in full

    for hostile in (pickle.dumps(print), pickle.dumps(io.BytesIO), pickle.dumps({"a": 1}), b"not a pickle"):
        with pytest.raises(UnsafeCheckpoint):
            load_metadata(hostile)
    with pytest.raises(UnsafeCheckpoint, match=r"os\.system"):
        MetadataUnpickler(io.BytesIO(b"cos\nsystem\n(S'true'\ntR.")).load()


def test_a_read_outside_the_verified_blocks_of_a_partly_fetched_file_is_refused(checkpoint):
    """The load plan decides which blocks are fetched and verified; were DCP to read anything else of such a file
    (unverified, zeros locally), the reader refuses instead of loading it."""
    _, step_path = checkpoint
    state = {"model": tiny()[0].state_dict()}
    reader = SafeFileSystemReader(str(step_path), {"__0_0.distcp": (4096, {0})})
    with pytest.raises(dcp.CheckpointException), quiet_single_process():
        dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner(), no_dist=True)
    assert reader.refused is not None and "outside the verified parts" in str(reader.refused)
    assert files_to_read(str(step_path / ".metadata"), state) is not None  # the plan itself is readable
    (step_path / ".metadata").write_bytes(pickle.dumps(print))
    assert files_to_read(str(step_path / ".metadata"), state) is None  # refused: fetch all, DCP reports it


def test_a_signed_checkpoint_resumes_and_its_manifest_carries_the_signature(tmp_path):
    uri = (tmp_path / "ckpt").as_uri()
    model, optimizer, scheduler = tiny()
    CheckpointManager(uri, signing_key=KEY).save(1, model, optimizer, scheduler, {"step": 1})
    manifest = json.loads((tmp_path / "ckpt" / step_dir(1) / MANIFEST).read_text())
    assert manifest["signature"]["algorithm"] == "hmac-sha256"

    assert CheckpointManager(uri, signing_key=KEY).load(1, *tiny()) == {"step": 1}


def test_with_a_key_a_tampered_file_and_manifest_are_refused_before_anything_is_read(tmp_path):
    root = tmp_path / "ckpt"
    CheckpointManager(root.as_uri(), signing_key=KEY).save(1, *tiny(), {"step": 1})
    marker = tmp_path / "pwned"
    replace_object(root / step_dir(1), ".metadata", pickle.dumps(WritesMarker(marker)))

    with pytest.raises(CheckpointTampered, match=r"signature of MANIFEST\.json does not match"):
        CheckpointManager(root.as_uri(), signing_key=KEY).load(1, *tiny())
    assert not marker.exists()


def test_with_a_key_a_changed_trainer_state_is_refused(tmp_path):
    root = tmp_path / "ckpt"
    CheckpointManager(root.as_uri(), signing_key=KEY).save(1, *tiny(), {"step": 1, "samples_consumed": 64})
    path = root / step_dir(1) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["trainer_state"]["samples_consumed"] = 0
    path.write_text(json.dumps(manifest))

    with pytest.raises(CheckpointTampered, match="does not match"):
        CheckpointManager(root.as_uri(), signing_key=KEY).load(1, *tiny())


def test_with_a_key_an_unsigned_checkpoint_is_refused_and_the_message_says_how_to_migrate(checkpoint):
    uri, _ = checkpoint
    with pytest.raises(CheckpointTampered, match=r"not signed.*resume it once without the key"):
        CheckpointManager(uri, signing_key=KEY).load(1, *tiny())


def test_the_signing_key_comes_from_the_environment_and_must_not_be_trivially_short(checkpoint, monkeypatch):
    uri, _ = checkpoint
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY.decode())
    with pytest.raises(CheckpointTampered, match="not signed"):
        CheckpointManager(uri).load(1, *tiny())
    assert signing_key_from_env({}) is None
    with pytest.raises(ValueError, match=f"{SIGNING_KEY_ENV}: .* 6 bytes; use at least 16"):
        signing_key_from_env({SIGNING_KEY_ENV: "secret"})


def test_model_from_loads_safetensors_only_never_a_pickled_bin(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM

    from pretrain_trainer.config import ModelSpec
    from pretrain_trainer.model import build_model

    model, _, _ = tiny()
    vocab = Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)}, unk_token="t0"))
    model.save_pretrained(tmp_path / "safe")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_bytes((tmp_path / "safe" / "config.json").read_bytes())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # what an older save_pretrained wrote

    def load(folder: Path) -> torch.nn.Module:
        spec = ModelSpec(architecture="gpt2", init="pretrained", from_=str(folder))
        return build_model(spec, AutoModelForCausalLM, vocab, {})[0]

    with pytest.raises(ValueError, match=r"spec\.model\.from: .*only safetensors weights are loaded"):
        load(pickled)
    assert torch.equal(load(tmp_path / "safe").lm_head.weight, model.lm_head.weight)


def test_a_tampered_checkpoint_ends_the_trainer_with_the_do_not_retry_exit_code(tmp_path, monkeypatch, capsys):
    import pretrain_trainer.trainer
    from pretrain_trainer.__main__ import run_job
    from pretrain_trainer.contract import EXIT_BAD_CONFIG

    def tampered(*_: object) -> None:
        raise CheckpointTampered("s3://ckpt/run/step-00000002", "the signature of MANIFEST.json does not match")

    monkeypatch.setattr(pretrain_trainer.trainer, "train", tampered)
    job = tmp_path / "job.yaml"
    job.write_text(
        "tokenizer: {uri: s3://bucket/tok}\ndata: {train: s3://bucket/train}\n"
        "training: {globalBatchSamples: 8, microBatchSize: 8}\n"
    )
    assert run_job(str(job), str(tmp_path / "run")) == EXIT_BAD_CONFIG
    assert "signature of MANIFEST.json does not match" in capsys.readouterr().err
