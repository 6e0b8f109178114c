"""The checkpoint layout without torch collectives: step names, scanning a root, the pruning policy, when a save
is due, manifest reading and its errors, and the error base that checkpoint and storage errors share."""

from __future__ import annotations

import json
import pickle

import pytest

from pretrain_trainer.checkpoint.layout import (
    FORMAT_VERSION,
    MANIFEST,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    build_manifest,
    delete_step,
    prune_plan,
    read_manifest,
    save_due,
    scan,
    step_dir,
)
from pretrain_trainer.errors import UriError
from pretrain_trainer.storage import StorageError, StorageNotFound, open_store
from pretrain_trainer.storage.local import LocalStore


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(str(tmp_path / "ckpt"))


def complete(store: LocalStore, step: int, state: dict | None = None) -> None:
    store.write(f"{step_dir(step)}/__0_0.distcp", b"data")
    manifest = build_manifest(
        step,
        1,
        [{"key": "__0_0.distcp", "size": 4, "sha256": "x"}],
        state or {},
        has_optimizer=True,
        has_scheduler=True,
        created_unix=0.0,
        torch_version="test",
    )
    store.write(f"{step_dir(step)}/{MANIFEST}", json.dumps(manifest).encode())


def partial(store: LocalStore, step: int) -> None:
    store.write(f"{step_dir(step)}/__0_0.distcp", b"half")


# ------------------------------------------------------------------------------------------------ pruning


def test_prune_keeps_the_newest_keep_complete_checkpoints():
    found = {10: True, 20: True, 30: True, 40: True}
    assert prune_plan(found, keep=2) == [10, 20]
    assert prune_plan(found, keep=4) == []
    assert prune_plan(found, keep=9) == []


def test_prune_never_deletes_a_partial_checkpoint_newer_than_every_complete_one():
    # step 50 is being written right now by the trainer; deleting it would break that save.
    found = {10: True, 20: True, 50: False}
    assert prune_plan(found, keep=1) == [10]


def test_prune_deletes_partial_checkpoints_older_than_the_newest_complete_one():
    # 15 and 25 are crashed saves: a complete one exists after them, so no save of theirs is still running.
    found = {10: True, 15: False, 20: True, 25: False, 30: True}
    assert prune_plan(found, keep=2) == [10, 15, 25]
    assert prune_plan(found, keep=3) == [15, 25]


def test_prune_without_a_complete_checkpoint_deletes_nothing():
    assert prune_plan({}, keep=1) == []
    assert prune_plan({5: False, 9: False}, keep=1) == []


def test_prune_refuses_a_keep_below_one():
    with pytest.raises(ValueError, match="keep: must be an integer >= 1"):
        prune_plan({1: True}, keep=0)


# --------------------------------------------------------------------------------------------- save due


def test_a_save_is_due_every_n_steps_and_at_the_end_but_never_twice_at_one_step():
    assert [s for s in range(1, 13) if save_due(s, 4, None)] == [4, 8, 12]
    assert save_due(7, 4, None, final=True)
    assert not save_due(8, 4, last_saved=8, final=True)  # the periodic save already wrote step 8
    assert not save_due(6, 3, last_saved=6)  # resumed at 6: do not rewrite the checkpoint just loaded
    assert save_due(9, 3, last_saved=6)


def test_with_no_period_only_the_final_save_is_due():
    assert not any(save_due(s, 0, None) for s in range(1, 20))
    assert save_due(19, 0, None, final=True)


# ------------------------------------------------------------------------------------------------- scan


def test_scan_tells_complete_from_partial_and_ignores_foreign_names(store):
    complete(store, 10)
    partial(store, 20)
    store.write("step-1/__0_0.distcp", b"not ours")  # not zero-padded: not a name this package writes
    store.write("step-0000003x/MANIFEST.json", b"{}")
    store.write("hf/step-00000010/config.json", b"{}")
    assert scan(store) == {10: True, 20: False}


def test_delete_step_removes_the_manifest_and_every_object(store):
    complete(store, 10)
    complete(store, 20)
    delete_step(store, 10)
    assert scan(store) == {20: True}
    assert not [info for info in store.list("") if info.key.startswith(step_dir(10))]


# --------------------------------------------------------------------------------------------- manifest


def test_read_manifest_returns_the_trainer_state(store):
    complete(store, 10, {"tokens_seen": 1234})
    manifest = read_manifest(store, 10)
    assert manifest["trainer_state"] == {"tokens_seen": 1234}
    assert manifest["format_version"] == FORMAT_VERSION


def test_reading_a_partial_checkpoint_names_the_newest_complete_one(store):
    complete(store, 10)
    partial(store, 20)
    with pytest.raises(CheckpointNotFound, match=r"step-00000020: no complete checkpoint at step 20.*step 10"):
        read_manifest(store, 20)


def test_an_unreadable_manifest_is_corrupt_and_says_what_to_do(store):
    store.write(f"{step_dir(5)}/{MANIFEST}", b"{not json")
    with pytest.raises(CheckpointCorrupt, match=r"MANIFEST\.json is unreadable.*delete this checkpoint"):
        read_manifest(store, 5)


def test_a_manifest_from_a_newer_format_is_refused(store):
    complete(store, 5)
    manifest = json.loads(store.read(f"{step_dir(5)}/{MANIFEST}"))
    store.write(f"{step_dir(5)}/{MANIFEST}", json.dumps({**manifest, "format_version": 99}).encode())
    with pytest.raises(CheckpointError, match="format version 99 is newer"):
        read_manifest(store, 5)


# ------------------------------------------------------------------------------------------------ errors


def test_checkpoint_and_storage_errors_share_one_base_with_uri_and_fix():
    ckpt = CheckpointCorrupt("s3://user:secret@host/b/step-00000001", "damaged; delete this checkpoint")
    storage = StorageNotFound("s3://b/k", "no such key")
    for err in (ckpt, storage):
        assert isinstance(err, UriError)
        again = pickle.loads(pickle.dumps(err))  # crosses processes in all_gather_object
        assert type(again) is type(err) and str(again) == str(err)
    assert str(ckpt) == "s3://***@host/b/step-00000001: damaged; delete this checkpoint"
    assert isinstance(ckpt, RuntimeError) and not isinstance(ckpt, StorageError)
    assert not isinstance(storage, CheckpointError)


def test_open_store_of_a_checkpoint_root_scans_empty(tmp_path):
    assert scan(open_store(str(tmp_path / "nothing-yet"))) == {}
