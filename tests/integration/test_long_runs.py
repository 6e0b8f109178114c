"""Long runs survive what real clusters do (issue 11, items 2, 3, 4 and 9), through the real trainer on a tiny
GPT-2 with shards in S3 on loopback and checkpoints on file://:

- a non-finite loss or gradient norm, from a diverging spec value or a poisoned batch, is caught on its step and
  handled by spec.training.nonFinite (stop, skip, rollback), and never checkpointed;
- a damaged newest checkpoint is set aside and the previous one resumed, with the log saying so;
- a second writer on the same checkpoint URI is refused while the first holds its lease; a changed spec that
  changes what the state means is refused on resume, harmless changes are accepted;
- train.jsonl shows each step once after a resume (the repeated ones are marked superseded).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from pretrain_trainer.checkpoint import CheckpointManager, step_dir
from pretrain_trainer.checkpoint.compat import ResumeMismatch
from pretrain_trainer.checkpoint.lease import OWNER, Lease, LeaseHeld, run_identity
from pretrain_trainer.config import load_job
from pretrain_trainer.distributed import DistEnv
from pretrain_trainer.nonfinite import NonFiniteError
from pretrain_trainer.report import current, read_log
from pretrain_trainer.storage import open_store
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from pretrain_trainer.trainer import Trainer
from tests.support.jobs import make_dataset, write_job

GLOBAL = 8  # samples per step in write_job's spec


@pytest.fixture(scope="module")
def data(s3):
    return make_dataset("s3://long-runs", "bundled", TokenizerTrainingSpec(model="bpe", vocab_size=512), s3)


@pytest.fixture
def job_file(data, s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    def make(name: str = "long", **spec) -> Path:
        spec.setdefault("checkpoint", {"uri": (tmp_path / "ckpt").as_uri(), "everySteps": 2})
        spec.setdefault("training", {})
        spec["training"] = {"maxSteps": 6, "logEverySteps": 100, **spec["training"]}
        return write_job(tmp_path / f"{name}.yaml", name, data, s3_endpoint, **spec)

    return make


def trainer(path: Path, run_dir: Path, poisoned: set[int] = frozenset(), **replace) -> Trainer:
    """A Trainer of the job in `path`; the global batches starting at the sample positions in `poisoned` give
    NaN activations (as a corrupt sample or a numerical bug would); `replace` sets spec fields past validation."""
    job = load_job(path)
    if replace:
        sections = {name: dataclasses.replace(getattr(job.spec, name), **fields) for name, fields in replace.items()}
        job = dataclasses.replace(job, spec=dataclasses.replace(job.spec, **sections))
    t = Trainer(job, DistEnv(), run_dir)
    if poisoned:
        batch, flag = t._batch, {"on": False}

        def marking(window, first_position):
            flag["on"] = first_position in poisoned
            return batch(window, first_position)

        def poison(module, inputs, output):
            return output * float("nan") if flag["on"] and module.training else output

        t._batch = marking
        t.raw_model.get_input_embeddings().register_forward_hook(poison)
    return t


def events(run_dir: Path, kind: str) -> list[dict]:
    return [r for r in read_log(run_dir) if r.get("event") == kind]


def steps_logged(run_dir: Path) -> list[int]:
    return [r["step"] for r in current(read_log(run_dir)) if "event" not in r]


# ------------------------------------------------------------------------------------------ non-finite


def test_a_nan_spec_value_past_validation_stops_on_its_first_non_finite_step_never_checkpointed(job_file, tmp_path):
    """`minLrRatio: .nan` is refused by validation (test_config); should one reach the trainer anyway, the
    learning rate turns NaN after warm-up, and the first non-finite step ends the run: exit code "bad config"."""
    path = job_file(checkpoint={"uri": (tmp_path / "ckpt").as_uri(), "everySteps": 1}, training={"maxSteps": 20})
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"step (\d+): loss .*nonFinite\.action is stop") as info:
        trainer(path, run, optimizer={"min_lr_ratio": float("nan")}).run()
    bad = int(info.value.args[0].split("step ", 1)[1].split(":")[0])
    [event] = events(run, "non_finite")
    assert event["step"] == bad and event["action"] == "stop"
    assert not math.isfinite(float(event["loss"])) or not math.isfinite(float(event["grad_norm"]))
    saved = CheckpointManager((tmp_path / "ckpt").as_uri()).steps()
    assert saved == list(range(1, bad))  # every finite step, never the bad one
    # Each one reported once, though a save still runs in the background when the next is due.
    assert [e["step"] for e in events(run, "checkpoint")] == saved
    assert max(steps_logged(run)) == bad - 1
    assert not open_store((tmp_path / "ckpt").as_uri()).exists(OWNER)  # the lease is given back


def test_a_poisoned_batch_stops_the_run_by_default_naming_the_step_and_its_samples(job_file, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=rf"step 3: loss nan.*samples {2 * GLOBAL}\.\.{3 * GLOBAL - 1}"):
        trainer(job_file(), run, poisoned={2 * GLOBAL}).run()
    assert CheckpointManager((tmp_path / "ckpt").as_uri()).steps() == [2]


def test_skip_drops_the_poisoned_batch_and_the_checkpoint_counts_it(job_file, tmp_path):
    path = job_file(training={"nonFinite": {"action": "skip"}})
    run = tmp_path / "run"
    summary = trainer(path, run, poisoned={2 * GLOBAL}).run()
    assert summary.steps == 6 and all(math.isfinite(loss) for loss in summary.losses)
    [event] = events(run, "non_finite")
    assert event["step"] == 3 and event["action"] == "skip" and event["samples"] == 2 * GLOBAL
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]
    state = CheckpointManager((tmp_path / "ckpt").as_uri()).manifest(6)["trainer_state"]
    assert state["skipped_batches"] == 1 and state["loader"]["samples_consumed"] == 7 * GLOBAL
    # Resuming checks the position against step and skipped batches, and accepts it.
    longer = job_file(training={"maxSteps": 7, "nonFinite": {"action": "skip"}})
    assert trainer(longer, run).run().resumed_from == 6


def test_skip_stops_once_its_limit_is_spent(job_file, tmp_path):
    path = job_file(training={"nonFinite": {"action": "skip", "limit": 1}})
    with pytest.raises(NonFiniteError, match=r"1 non-finite steps were already handled with skip.*limit is 1"):
        trainer(path, tmp_path / "run", poisoned={GLOBAL, 3 * GLOBAL}).run()


def test_rollback_reloads_the_last_good_checkpoint_and_passes_the_poisoned_batch(job_file, tmp_path):
    """Rolling back to step 3 and passing the batch of step 5 trains what skipping it would: the same losses."""
    every3 = {"uri": (tmp_path / "ckpt").as_uri(), "everySteps": 3}
    skipped = trainer(
        job_file("skip", training={"nonFinite": {"action": "skip"}}, checkpoint={"uri": "", "everySteps": 3}),
        tmp_path / "skip",
        poisoned={4 * GLOBAL},
    ).run()
    run = tmp_path / "run"
    rolled = trainer(
        job_file("rollback", training={"nonFinite": {"action": "rollback"}}, checkpoint=every3), run, {4 * GLOBAL}
    ).run()
    assert rolled.steps == 6 and rolled.losses == pytest.approx(skipped.losses, rel=1e-5)
    [rollback] = events(run, "rollback")
    assert rollback["step"] == 3 and rollback["superseded_records"] >= 1  # step 4 was trained again
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]
    assert events(run, "batch_skipped")[0]["samples"] == 4 * GLOBAL
    assert CheckpointManager(every3["uri"]).manifest(6)["trainer_state"]["skipped_batches"] == 1


def test_rollback_without_an_earlier_checkpoint_stops_with_a_clear_error(job_file, tmp_path):
    path = job_file(training={"nonFinite": {"action": "rollback"}})
    with pytest.raises(NonFiniteError, match="no checkpoint was written before the non-finite step"):
        trainer(path, tmp_path / "run", poisoned={0}).run()


# ---------------------------------------------------------------------------------------- damaged checkpoints


def test_a_damaged_newest_checkpoint_is_set_aside_and_training_resumes_from_the_previous_one(job_file, tmp_path):
    run = tmp_path / "run"
    trainer(job_file(), run).run()  # checkpoints at 2, 4, 6
    store = open_store((tmp_path / "ckpt").as_uri())
    key = f"{step_dir(6)}/__0_0.distcp"
    data = bytearray(store.read(key))
    data[100] ^= 0x10
    store.write(key, bytes(data))
    summary = trainer(job_file(training={"maxSteps": 7}), run).run()
    assert summary.resumed_from == 4 and summary.steps == 7
    [aside] = events(run, "checkpoint_set_aside")
    assert aside["step"] == 6 and ".damaged-" in aside["uri"] and "SHA-256" in aside["reason"]
    assert open_store(aside["uri"]).exists("__0_0.distcp")  # kept for inspection
    # train.jsonl: steps 5 and 6 of the first run are marked superseded; each step shows once.
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6, 7]
    assert sorted(r["step"] for r in read_log(run) if r.get("superseded") and "event" not in r) == [5, 6]


def test_resume_from_picks_a_step_and_sets_newer_checkpoints_aside(job_file, tmp_path):
    run = tmp_path / "run"
    trainer(job_file(), run).run()
    ckpt = (tmp_path / "ckpt").as_uri()
    path = job_file(checkpoint={"uri": ckpt, "everySteps": 2, "resumeFrom": 2})
    assert trainer(path, run).run().resumed_from == 2
    assert [e["step"] for e in events(run, "checkpoint_superseded")] == [4, 6]
    # A restart of that run continues from its own newer checkpoints, not from step 2 again.
    assert (
        trainer(job_file(checkpoint={"uri": ckpt, "everySteps": 2, "resumeFrom": 2}, training={"maxSteps": 8}), run)
        .run()
        .resumed_from
        == 6
    )
    with pytest.raises(ValueError, match=r"resumeFrom: .*no complete checkpoint at step 3"):
        trainer(job_file(checkpoint={"uri": ckpt, "everySteps": 2, "resumeFrom": 3}), run).run()


# ------------------------------------------------------------------------------------ fencing and compatibility


def test_a_second_writer_is_refused_while_the_first_holds_the_lease_and_a_stale_lease_is_taken(job_file, tmp_path):
    ckpt = (tmp_path / "ckpt").as_uri()
    other = Lease(open_store(ckpt), "other-job", run_identity(tmp_path / "other-run"), settle=0)
    other.acquire()
    with pytest.raises(LeaseHeld, match=r"another run writes checkpoints here: job 'other-job' .*lease expires"):
        trainer(job_file(), tmp_path / "run").run()
    assert CheckpointManager(ckpt).steps() == []
    # The other run died without renewing: once its lease expired, this job takes the URI over.
    stale = Lease(open_store(ckpt), "other-job", run_identity(tmp_path / "other-run"), settle=0, ttl=-1)
    stale.acquire()
    assert trainer(job_file(), tmp_path / "run").run().steps == 6


def test_a_writer_that_lost_its_lease_publishes_no_further_checkpoint(job_file, tmp_path):
    ckpt = (tmp_path / "ckpt").as_uri()
    t = trainer(job_file(training={"maxSteps": 4}), tmp_path / "run")
    original = t.checkpoints.commit  # what a save in place and a background save both end with

    def save_then_be_overtaken(step, *args, **kwargs):
        if step == 4:  # another run took the URI over (this one stalled past its lease, say)
            thief = {"job": "thief", "identity": "run:t", "holder": "h", "nonce": "n", "heartbeat_unix": 0}
            open_store(ckpt).write(OWNER, json.dumps({**thief, "expires_unix": 4e9}).encode())
        return original(step, *args, **kwargs)

    t.checkpoints.commit = save_then_be_overtaken
    with pytest.raises(Exception, match="no longer owns the checkpoint URI: it is held by job 'thief'"):
        t.run()
    assert CheckpointManager(ckpt).steps() == [2]


def test_a_changed_spec_that_changes_the_state_is_refused_on_resume_naming_each_field(job_file, tmp_path):
    run = tmp_path / "run"
    trainer(job_file(), run).run()
    changed = job_file(data={"seed": 6}, training={"maxSteps": 8, "seed": 3})
    with pytest.raises(ResumeMismatch, match=r"data\.seed: 5 -> 6; training\.seed: 0 -> 3\. These change"):
        trainer(changed, run).run()


def test_harmless_spec_changes_are_accepted_on_resume_and_logged(job_file, tmp_path, caplog):
    run = tmp_path / "run"
    trainer(job_file(), run).run()
    harmless = job_file(training={"maxSteps": 8, "logEverySteps": 3, "evalEverySteps": 4}, optimizer={"lr": 5e-3})
    with caplog.at_level("INFO", logger="pretrain_trainer.checkpoint"):
        assert trainer(harmless, run).run().resumed_from == 6
    [line] = [r.message for r in caplog.records if "changed settings" in r.message]
    assert "training.maxSteps: 6 -> 8" in line and "optimizer.lr: 0.01 -> 0.005" in line


def test_a_manifest_whose_position_disagrees_with_its_step_is_set_aside(job_file, tmp_path):
    run = tmp_path / "run"
    trainer(job_file(), run).run()
    store = open_store((tmp_path / "ckpt").as_uri())
    key = f"{step_dir(6)}/MANIFEST.json"
    manifest = json.loads(store.read(key))
    manifest["trainer_state"]["loader"]["samples_consumed"] += GLOBAL
    store.write(key, json.dumps(manifest).encode())
    assert trainer(job_file(training={"maxSteps": 7}), run).run().resumed_from == 4
    [aside] = events(run, "checkpoint_set_aside")
    assert "disagrees with step 6" in aside["reason"]


def test_the_poison_hook_is_inert_in_evaluation_and_for_other_batches(job_file, tmp_path):
    """The test's own instrument: only the named global batch is poisoned."""
    t = trainer(job_file(checkpoint={"uri": ""}), tmp_path / "run", poisoned={GLOBAL})
    with t._loader(t.train_set, 0, train=True) as loader:
        clean, poisoned = torch.from_numpy(next(loader)), torch.from_numpy(next(loader))
    t.raw_model.train()

    def logits(window, position):
        return t.raw_model(input_ids=t._batch(window, position)["input_ids"]).logits

    assert torch.isfinite(logits(clean, 0)).all()
    assert torch.isnan(logits(poisoned, GLOBAL)).all()
    t.raw_model.eval()
    assert torch.isfinite(logits(poisoned, GLOBAL)).all()
