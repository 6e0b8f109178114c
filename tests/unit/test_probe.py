"""The downstream probe (`pretrainjob eval probe`): language of a bundled-corpus line from frozen features."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

import pytest
import torch
import torch.multiprocessing as mp
from prometheus_client import generate_latest
from transformers import BertConfig, BertModel

from pretrain_operator.progress import parse_progress
from pretrain_trainer.cli import main
from pretrain_trainer.config import ConfigError, parse_spec
from pretrain_trainer.contract import PROGRESS_KEYS
from pretrain_trainer.launch import free_port
from pretrain_trainer.metrics import TrainerMetrics
from pretrain_trainer.probe import (
    MAX_TOKENS,
    FineTuning,
    encode,
    fine_tune,
    language_examples,
    probe_items,
    probe_model,
    wilson_interval,
)
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
    [(result, seconds)] = probes.run(model, model, torch.device("cpu"), None)
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
    nothing = torch.nn.Identity()
    assert TrainingProbes(on, tok, False, False).run(nothing, nothing, torch.device("cpu"), None) == []


def test_token_language_tests_one_ordinary_token_per_line_and_trains_on_every_ordinary_token():
    tok = trained(SPEC)
    train_lines, test_lines = language_examples()
    labels = sorted({lang for _, lang in train_lines + test_lines})
    test_enc = encode(tok, [t for t, _ in test_lines], MAX_TOKENS)
    test = probe_items("token-language", test_lines, test_enc, labels, train=False)
    assert [item.line for item in test] == list(range(len(test_lines)))  # every test line, once
    assert all(not test_enc[i.line][1][i.position] and i.label == labels.index(test_lines[i.line][1]) for i in test)
    assert len({i.position for i in test}) > 10  # the position follows the line, not a constant
    assert probe_items("token-language", test_lines, test_enc, labels, train=False) == test
    train_enc = encode(tok, [t for t, _ in train_lines[:20]], MAX_TOKENS)
    train = probe_items("token-language", train_lines[:20], train_enc, labels, train=True)
    assert [(i.line, i.position) for i in train] == [
        (n, p) for n, (_, special) in enumerate(train_enc) for p, s in enumerate(special) if not s
    ]
    assert any(any(special) for _, special in train_enc)  # the tokenizer adds special tokens, which are left out


def test_token_language_random_features_beat_chance_and_constant_ones_not_the_majority():
    tok = trained(SPEC)
    model = tiny_bert(tok.get_vocab_size())
    result = probe_model(model, tok, "token-language", max_train=500)
    assert result.test_examples == len(language_examples()[1]) and result.train_examples == 500
    assert result.low > 1 / result.classes and "on 363 test tokens; 500 training tokens" in result.format()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    _, test = language_examples()
    majority = Counter(lang for _, lang in test).most_common(1)[0][1] / len(test)
    assert probe_model(model, tok, "token-language", max_train=500).accuracy <= majority + 1e-9


def test_fine_tuning_trains_a_copy_of_encoder_and_head_and_leaves_the_model_untouched():
    tok = trained(SPEC)
    model = tiny_bert(tok.get_vocab_size())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines = language_examples()[0][:40]
    labels = sorted({lang for _, lang in lines})
    enc = encode(tok, [t for t, _ in lines], MAX_TOKENS)
    items = probe_items("language", lines, enc, labels, train=True)
    head = torch.nn.Linear(32, len(labels))
    head_before = head.weight.clone()
    tuned, tuned_head = fine_tune(model, enc, items, head, torch.device("cpu"), FineTuning(epochs=1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(head.weight, head_before)
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.layer.0.") for k in changed) and any(k.startswith("embeddings.") for k in changed)
    assert not torch.equal(tuned_head.weight, head_before) and not tuned.training


def test_eval_probe_fine_tunes_on_the_token_task_and_prints_its_interval(tmp_path, capsys):
    tok = trained(SPEC)
    tiny_bert(tok.get_vocab_size()).save_pretrained(tmp_path / "model")
    save_tokenizer(tok, SPEC, str(tmp_path / "model"))
    folder = str(tmp_path / "model")
    args = ["--task", "token-language", "--fine-tune", "--epochs", "1", "--max-examples", "500"]
    assert main(["eval", "probe", folder, *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("token-language (fine-tuned, 1 epoch): accuracy 0.")
    assert "363 test tokens; 500 training tokens" in out
    for flag in ("--epochs", "--max-examples"):
        assert main(["eval", "probe", folder, "--fine-tune", flag, "0"]) == 2
        assert f"{flag}: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_under_fsdp_every_rank_gathers_the_weights_for_the_probe_of_a_part_and_rank_zero_alone_reports(tmp_path):
    """A probe target below the FSDP2 root (ELECTRA's discriminator) does not run the root's forward, which alone
    gathers the root's own parameters (embeddings): without the gather it fails on sharded weights."""
    from tests.support.dist_worker import probe_under_fsdp

    trained(SPEC).save(str(tmp_path / "tokenizer.json"))  # one tokenizer for both ranks
    mp.spawn(probe_under_fsdp, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    zero, one = (json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in range(2))
    assert len(zero["accuracies"]) == 1 and 0.1 < zero["accuracies"][0] <= 1 and one["accuracies"] == []
    assert zero["sharded"] and one["sharded"]  # sharded again for training
