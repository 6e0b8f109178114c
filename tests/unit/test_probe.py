"""The downstream probe (`pretrainjob eval probe`): language of a bundled-corpus line from frozen features."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

import pytest
import torch
from prometheus_client import generate_latest
from transformers import BertConfig, BertModel

from pretrain_operator.progress import parse_progress
from pretrain_trainer.cli import main
from pretrain_trainer.config import ConfigError, parse_spec
from pretrain_trainer.contract import PROGRESS_KEYS
from pretrain_trainer.metrics import TrainerMetrics
from pretrain_trainer.probe import language_examples, probe_model, wilson_interval
from pretrain_trainer.probe_runs import TrainingProbes
from pretrain_trainer.report import format_summary, read_log, termination_record
from pretrain_trainer.reporting import Reporter
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

SPEC = TokenizerTrainingSpec(model="wordpiece", vocab_size=512, objective="mlm")
PROBE_JOB = {
    "tokenizer": {"uri": "tok"},
    "data": {"train": "train", "sequenceLength": 16},
    "model": {"architecture": "bert"},
    "objective": {"type": "mlm"},
    "training": {"globalBatchSamples": 2, "microBatchSize": 2},
}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}


def tiny_bert(vocab: int) -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=64, **TINY))


def test_the_wilson_interval_matches_published_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0


def test_language_lines_of_one_document_never_land_on_both_sides():
    train, test = language_examples()
    assert not {t for t, _ in train} & {t for t, _ in test}
    assert len(Counter(lang for _, lang in test)) == len(Counter(lang for _, lang in train)) == 10
    assert len(test) > 100


def test_random_features_already_separate_languages_far_above_chance():
    tok = trained(SPEC)
    result = probe_model(tiny_bert(tok.get_vocab_size()), tok)
    assert result.classes == 10 and result.accuracy > 0.6 and result.low < result.accuracy < result.high


def test_constant_features_score_no_better_than_the_majority_class():
    tok = trained(SPEC)
    model = tiny_bert(tok.get_vocab_size())
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    _, test = language_examples()
    majority = Counter(lang for _, lang in test).most_common(1)[0][1] / len(test)
    assert probe_model(model, tok).accuracy <= majority + 1e-9


def test_eval_probe_prints_accuracy_with_its_interval_for_an_exported_folder(tmp_path, capsys):
    tok = trained(SPEC)
    tiny_bert(tok.get_vocab_size()).save_pretrained(tmp_path / "model")
    save_tokenizer(tok, SPEC, str(tmp_path / "model"))
    assert main(["eval", "probe", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("language: accuracy 0.") and "(95% CI 0." in out and "10 classes" in out


def test_a_probe_during_training_reaches_metrics_log_summary_termination_record_and_status(tmp_path, capsys):
    """spec.evaluation.probes: rank 0 probes the current model; the result goes where progress goes, and the operator
    reads it from /metrics and from the termination record into status.probeAccuracy."""
    tok = trained(SPEC)
    spec = parse_spec({**PROBE_JOB, "evaluation": {"probes": {"everySteps": 2, "maxExamples": 50}}})
    probes = TrainingProbes(spec.evaluation.probes, tok, True, False)
    assert [s for s in range(1, 7) if probes.due(s)] == [2, 4, 6]
    rep = Reporter("job-a", tmp_path, metrics_port=0, is_main=True, max_steps=6, log_every_steps=1, world_size=1,
                   flops_per_token=1.0, peak_flops=None)  # fmt: skip
    rep.metrics = TrainerMetrics("job-a", 0, enabled=True)  # rendered, never served
    model = tiny_bert(tok.get_vocab_size())
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    [(result, seconds)] = list(probes.run(model, torch.device("cpu"), None))
    assert torch.equal(torch.rand(3), expected_next)  # the trainer's random state (dropout masks) is untouched
    assert result.train_examples == 50 and result.test_examples == len(language_examples()[1]) and seconds > 0
    rep.probe(4, result, seconds)

    [event] = [r for r in read_log(tmp_path) if r.get("event") == "probe"]
    assert event["step"] == 4 and event["task"] == "language" and event["accuracy"] == result.accuracy
    assert f"probe at step 4: language: accuracy {result.accuracy:.3f}" in capsys.readouterr().out
    scraped = parse_progress(generate_latest(rep.metrics.registry).decode(), "job-a")
    assert scraped == {"probeAccuracy": {"language": round(result.accuracy, 4)}, "probeStep": 4}
    summary = rep.finish(steps=6, tokens_seen=1, tokens_this_run=1, seconds=1.0, num_params=1, resumed_from=None,
                         preempted=False, hf_export=None)  # fmt: skip
    assert summary.probes == {"language": {"step": 4, "accuracy": result.accuracy, "low": result.low,
                                           "high": result.high}}  # fmt: skip
    record = json.loads(termination_record(asdict(summary)))
    assert record["probeAccuracy"] == {"language": round(result.accuracy, 4)} and record["probeStep"] == 4
    assert f"probe language at step 4: accuracy {result.accuracy:.3f}" in format_summary(asdict(summary))
    assert set(record) - {"step", "loss", "tokensSeen", "tokensPerSecond", "preempted"} <= set(PROGRESS_KEYS)


def test_probes_are_off_by_default_and_other_ranks_report_nothing():
    tok = trained(SPEC)
    off = TrainingProbes(parse_spec(PROBE_JOB).evaluation.probes, tok, True, False)
    assert not off.enabled and not any(off.due(s) for s in range(1, 100))
    with pytest.raises(ConfigError, match=r"spec.evaluation.probes.tasks: empty, but everySteps asks for probes"):
        parse_spec({**PROBE_JOB, "evaluation": {"probes": {"everySteps": 1, "tasks": []}}})
    on = parse_spec({**PROBE_JOB, "evaluation": {"probes": {"everySteps": 1}}}).evaluation.probes
    assert list(TrainingProbes(on, tok, False, False).run(torch.nn.Identity(), torch.device("cpu"), None)) == []
