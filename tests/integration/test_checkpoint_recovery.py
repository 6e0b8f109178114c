"""A damaged newest checkpoint no longer blocks a job: each kind of damage (missing, truncated or bit-flipped
object, garbled or future-format manifest) is detected on resume, the checkpoint is set aside (renamed, never
deleted) and the newest earlier one that verifies is loaded; pruning never drops the newest known-good
checkpoints; the leftovers of killed saves (partial folders, temporary files, unfinished multipart uploads,
staging folders of dead processes) are removed. On S3 (moto on loopback) and file://.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile

import pytest

from pretrain_trainer.checkpoint import MANIFEST, CheckpointCorrupt, CheckpointManager, CheckpointNotFound, step_dir
from pretrain_trainer.checkpoint.layout import FORMAT_VERSION, aside_dir
from pretrain_trainer.checkpoint.recovery import remove_dead_staging, staging_prefix
from pretrain_trainer.storage import open_store
from tests.integration.test_checkpoint import assert_same_params, root, saved, trainables  # noqa: F401


def _flip_a_byte(store, key: str) -> None:
    data = bytearray(store.read(key))
    data[len(data) // 2] ^= 0x01
    store.write(key, bytes(data))


def _rewrite_manifest(store, step: int, change) -> None:
    key = f"{step_dir(step)}/{MANIFEST}"
    manifest = json.loads(store.read(key))
    change(manifest)
    store.write(key, json.dumps(manifest).encode())


DAMAGE = {
    "missing-object": lambda store, step: store.delete(f"{step_dir(step)}/__0_0.distcp"),
    "truncated-object": lambda store, step: store.write(
        f"{step_dir(step)}/__0_0.distcp", store.read(f"{step_dir(step)}/__0_0.distcp")[:-7]
    ),
    "bit-flip": lambda store, step: _flip_a_byte(store, f"{step_dir(step)}/__0_0.distcp"),
    "bit-flip-in-rng-file": lambda store, step: _flip_a_byte(store, f"{step_dir(step)}/extra-rank0.pt"),
    "garbled-manifest": lambda store, step: store.write(f"{step_dir(step)}/{MANIFEST}", b'{"format": "pretr'),
    "future-format-manifest": lambda store, step: _rewrite_manifest(
        store, step, lambda m: m.update(format_version=FORMAT_VERSION + 1)
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_is_resumed(root, damage, caplog):  # noqa: F811
    manager = saved(root, [2, 4])
    expected, _, _ = trainables(0)
    CheckpointManager(root[0], root[1]).load(2, expected, None, None)
    before = {info.key for info in manager.store.list(f"{step_dir(4)}/")}
    DAMAGE[damage](manager.store, 4)

    model, optimizer, scheduler = trainables(99)
    with caplog.at_level(logging.WARNING, logger="pretrain_trainer.checkpoint"):
        resumed = CheckpointManager(root[0], root[1]).resume(model, optimizer, scheduler)

    assert resumed is not None and resumed.step == 2 and resumed.trainer_state == {"step": 2}
    assert_same_params(model, expected)
    [(step, moved_to, why)] = resumed.set_aside
    assert step == 4 and moved_to.startswith(manager.store.uri_for(step_dir(4) + ".damaged-"))
    assert step_dir(4) in why
    # Kept for inspection, with everything the damaged checkpoint still had; its own name is free again.
    aside = open_store(moved_to, root[1])
    lost = {"__0_0.distcp"} if damage == "missing-object" else set()
    assert {info.key for info in aside.list()} == {key.split("/", 1)[1] for key in before} - lost
    assert manager.steps() == [2] and manager.store.list(f"{step_dir(4)}/") == []
    assert any("unusable" in r.message and "set aside" in r.message for r in caplog.records)
    # A later save of step 4 and pruning leave the set-aside copy alone.
    manager.save(4, model, optimizer, scheduler, {"step": 4})
    manager.keep = 1
    assert manager.prune() == [2]
    assert {info.key for info in aside.list()} == {info.key for info in open_store(moved_to, root[1]).list()}


def test_with_every_checkpoint_damaged_the_run_starts_from_step_zero_and_keeps_them_all(tmp_path):
    local = ((tmp_path / "ckpt").as_uri(), None)
    manager = saved(local, [2, 4])
    DAMAGE["bit-flip"](manager.store, 2)
    DAMAGE["missing-object"](manager.store, 4)
    model, optimizer, scheduler = trainables(1)
    resumed = CheckpointManager(*local).resume(model, optimizer, scheduler)
    assert resumed is not None and resumed.step == 0 and [s for s, _, _ in resumed.set_aside] == [4, 2]
    assert not optimizer.state  # as fresh as without checkpoints (loading had initialised it with a zero step)
    assert all(p.grad is None for p in model.parameters())
    names = sorted({info.key.split("/")[0] for info in manager.store.list("")})
    assert len(names) == 2 and all(".damaged-" in name for name in names)


def test_an_empty_root_has_nothing_to_resume(tmp_path):
    assert CheckpointManager((tmp_path / "ckpt").as_uri()).resume(*trainables(1)) is None


def test_a_damaged_step_picked_by_the_user_is_refused_and_left_in_place(tmp_path):
    local = ((tmp_path / "ckpt").as_uri(), None)
    manager = saved(local, [2, 4, 6])
    DAMAGE["bit-flip"](manager.store, 6)
    with pytest.raises(CheckpointCorrupt, match="step-00000006"):
        CheckpointManager(*local).resume(*trainables(1), floor=6)
    assert manager.steps() == [2, 4, 6]
    with pytest.raises(CheckpointNotFound, match="no complete checkpoint at step 5; complete checkpoints: 6"):
        CheckpointManager(*local).resume(*trainables(1), floor=5)
    resumed = CheckpointManager(*local).resume(*trainables(1), floor=2)  # 6 is damaged, 4 is newest at or after 2
    assert resumed.step == 4 and [step for step, _, _ in resumed.set_aside] == [6]


def test_a_manifest_check_can_refuse_a_resume_or_send_it_to_an_earlier_checkpoint(tmp_path):
    local = ((tmp_path / "ckpt").as_uri(), None)
    saved(local, [2, 4])

    def inconsistent_at_4(manifest):
        if manifest["step"] == 4:
            raise CheckpointCorrupt("step-4", "samples_consumed does not match")

    assert CheckpointManager(*local).resume(*trainables(1), check=inconsistent_at_4).step == 2

    def other_job(manifest):
        raise ValueError("spec.data.train changed")

    with pytest.raises(ValueError, match=r"data\.train"):
        CheckpointManager(*local).resume(*trainables(1), check=other_job)


def test_pruning_never_drops_the_newest_known_good_checkpoints(tmp_path):
    local = ((tmp_path / "ckpt").as_uri(), None)
    manager = CheckpointManager(local[0], keep=2)
    model, optimizer, scheduler = trainables(0)
    for step, good in [(1, True), (2, True), (3, True), (4, False), (5, False), (6, False)]:
        manager.save(step, model, optimizer, scheduler, {}, known_good=good)
        manager.prune()
    assert manager.steps() == [2, 3, 4, 5, 6]
    assert [manager.manifest(s)["known_good"] for s in (3, 4)] == [True, False]
    manager.save(7, model, optimizer, scheduler, {}, known_good=True)
    assert manager.prune() == [2, 4, 5, 6]
    assert manager.steps() == [3, 7]


def test_clean_up_removes_what_killed_saves_left_on_file(tmp_path):
    local = ((tmp_path / "ckpt").as_uri(), None)
    manager = saved(local, [2])
    base = tmp_path / "ckpt"
    (base / step_dir(4)).mkdir()
    (base / step_dir(4) / "__0_0.distcp").write_bytes(b"half")  # a save killed before its manifest
    (base / step_dir(2) / ".__1_0.distcp.~pretrain-tmp-0123").write_bytes(b"x")  # a killed write's temp file
    (base / step_dir(6) / "nested").mkdir(parents=True)  # folders of a killed save, emptied
    assert manager.clean_up() == [4]
    assert sorted(p.name for p in base.iterdir()) == [step_dir(2)]
    assert ".__1_0.distcp.~pretrain-tmp-0123" not in os.listdir(base / step_dir(2))
    assert manager.steps() == [2]


def test_clean_up_aborts_unfinished_multipart_uploads_on_s3(s3_bucket, s3_env):
    uri = f"{s3_bucket}/jobs/multipart/ckpt"
    manager = saved((uri, s3_env), [2])
    store = manager.store
    client, bucket = store.client, store.bucket
    client.create_multipart_upload(Bucket=bucket, Key=f"{store.prefix}/{step_dir(4)}/__0_0.distcp")
    client.create_multipart_upload(Bucket=bucket, Key="jobs/multipart/other-job/file")  # not ours
    manager.clean_up()
    keys = [up["Key"] for up in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert keys == ["jobs/multipart/other-job/file"]
    assert manager.steps() == [2]


def test_staging_folders_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    mine = tempfile.mkdtemp(prefix=staging_prefix("save", 4, 0), dir=tmp_path)
    (tmp_path / f"ckpt-save-{step_dir(4)}-rank0-pid{dead_pid}-abc").mkdir()
    (tmp_path / f"ckpt-load-{step_dir(2)}-rank1-pid{dead_pid}-abc").mkdir()  # another rank's: not ours to judge
    (tmp_path / "unrelated").mkdir()
    assert remove_dead_staging(str(tmp_path), rank=0) == [f"ckpt-save-{step_dir(4)}-rank0-pid{dead_pid}-abc"]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(mine), f"ckpt-load-{step_dir(2)}-rank1-pid{dead_pid}-abc", "unrelated"]
    )


def test_aside_names_sort_beside_their_step_and_are_ignored_by_scans(tmp_path):
    assert aside_dir(40, "damaged", 0) == "step-00000040.damaged-19700101T000000Z"
    manager = saved(((tmp_path / "ckpt").as_uri(), None), [3])
    manager.set_aside(3, "damaged")
    assert manager.steps() == [] and manager.latest() is None
