"""The run reporter: one call per step, evaluation and checkpoint fills train.jsonl, the console, Prometheus and, at
the end, the Summary and summary.json; ranks other than 0 keep the same Summary but write nothing."""

from __future__ import annotations

import json
import math

import pytest

from pretrain_trainer.report import LOG_FILE, SUMMARY_FILE, read_log
from pretrain_trainer.reporting import Reporter, StepReport


def reporter(run_dir, *, is_main: bool = True, peak: float | None = None, log_every: int = 2) -> Reporter:
    return Reporter(
        "job-a",
        run_dir,
        metrics_port=0,
        is_main=is_main,
        max_steps=4,
        log_every_steps=log_every,
        world_size=2,
        flops_per_token=100.0,
        peak_flops=peak,
    )


def step(n: int, loss: float) -> StepReport:
    return StepReport(
        step=n,
        loss=loss,
        learning_rate=1e-3,
        grad_norm=0.5,
        seconds=2.0,
        data_wait_seconds=0.5,
        storage_bytes_read=10,
        tokens=1000,
        samples=8,
        first_sample=(n - 1) * 8,
    )


def finish(rep: Reporter, **overrides):
    figures = dict(
        steps=3,
        tokens_seen=3000,
        tokens_this_run=2000,
        seconds=4.0,
        num_params=123,
        resumed_from=1,
        preempted=False,
        hf_export=None,
    )
    return rep.finish(**{**figures, **overrides})


def test_a_run_leaves_one_log_line_per_step_evaluation_and_checkpoint(tmp_path, capsys):
    rep = reporter(tmp_path)
    rep.start()
    rep.step(step(2, 3.0))
    rep.validation(2, 2.5, math.exp(2.5))
    rep.checkpoint(2, "s3://b/step-00000002", 1.23456)
    rep.step(step(3, 2.0))
    records = read_log(tmp_path)
    assert [r.get("event") for r in records] == [None, "validation", "checkpoint", None]
    first = records[0]
    assert first["step"] == 2 and first["loss"] == 3.0 and first["tokens_per_second"] == 500.0
    assert (first["first_sample"], records[3]["first_sample"]) == (8, 16)  # step 2 trained samples 8..15
    assert first["mfu"] is None  # CPU: no known peak
    assert records[2] == {**records[2], "uri": "s3://b/step-00000002", "seconds": 1.235}
    console = capsys.readouterr().out.splitlines()
    # every log_every steps (and step 1): step 2 is printed, step 3 is not
    assert console[0].startswith("step      2/4 | loss 3.0000 | lr 1.00e-03 | grad 0.500 | 500 tok/s")
    assert console[0].endswith("data wait 25%")
    assert console[1] == "validation at step 2: loss 2.5000 | perplexity 12.18"
    assert len(console) == 2


def test_the_summary_is_built_from_what_was_reported_and_written_on_rank_zero(tmp_path):
    rep = reporter(tmp_path)
    rep.start()
    rep.step(step(2, 3.0))
    rep.checkpoint(2, "s3://b/step-00000002", 1.0)
    rep.validation(2, 2.5, 12.0)
    rep.step(step(3, 2.0))
    summary = finish(rep, hf_export="s3://b/hf/step-00000003")
    assert summary.final_loss == 2.0 and summary.losses == [3.0, 2.0]
    assert summary.tokens_per_second == 500.0  # this run's tokens over this run's seconds
    assert (summary.last_checkpoint, summary.last_checkpoint_step) == ("s3://b/step-00000002", 2)
    assert (summary.validation_loss, summary.validation_perplexity) == (2.5, 12.0)
    assert summary.world_size == 2 and summary.resumed_from == 1 and summary.job == "job-a"
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["hf_export"] == "s3://b/hf/step-00000003"


def test_a_run_without_steps_has_a_nan_loss_and_no_checkpoint(tmp_path):
    summary = finish(reporter(tmp_path), seconds=0.0)
    assert math.isnan(summary.final_loss) and summary.tokens_per_second == 0.0
    assert summary.last_checkpoint is None and summary.validation_loss is None


def test_other_ranks_keep_the_same_summary_but_write_and_print_nothing(tmp_path, capsys):
    main, other = reporter(tmp_path / "0"), reporter(tmp_path / "1", is_main=False)
    for rep in (main, other):
        rep.start()
        rep.step(step(1, 4.0))
        rep.checkpoint(1, "s3://b/step-00000001", 1.0)
    assert finish(main) == finish(other)
    assert not (tmp_path / "1" / LOG_FILE).exists() and not (tmp_path / "1" / SUMMARY_FILE).exists()
    assert capsys.readouterr().out.count("step      1/4") == 1


def test_mfu_divides_model_flops_by_the_peak_of_every_rank(tmp_path):
    rep = reporter(tmp_path, peak=1000.0)
    assert rep.mfu(10.0) == pytest.approx(100.0 * 10.0 / (1000.0 * 2))
    rep.start()
    rep.step(step(1, 1.0))
    assert read_log(tmp_path)[0]["mfu"] == pytest.approx(100.0 * 500.0 / 2000.0)


def test_a_rollback_forgets_the_losses_of_the_steps_trained_again_and_objective_metrics_reach_the_log(tmp_path):
    rep = reporter(tmp_path)
    rep.start()
    for n, loss in enumerate([5.0, 4.0, 3.0], start=2):
        rep.step(step(n, loss))
    rep.non_finite({"step": 5, "loss": math.inf})
    rep.rewind(1)  # rolled back to the checkpoint after the run's first step: steps 3 and 4 are trained again
    rep.step(StepReport(**{**step(3, 3.5).__dict__, "objective_metrics": {"mlm_accuracy": 0.25}}))
    summary = finish(rep)
    assert summary.losses == [5.0, 3.5] and summary.final_loss == 3.5
    records = read_log(tmp_path)
    assert [r for r in records if r.get("event") == "non_finite"] == [
        {"time": records[3]["time"], "event": "non_finite", "step": 5, "loss": math.inf}
    ]
    assert records[-1]["mlm_accuracy"] == 0.25
