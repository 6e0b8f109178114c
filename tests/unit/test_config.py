"""The PretrainJob spec schema: defaults, field-path errors, semantic checks, `pretrainjob validate`."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pretrain_trainer.cli import main
from pretrain_trainer.config import ConfigError, load_jobs, parse_job, parse_spec, to_dict
from pretrain_trainer.contract import API_VERSION
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, save_tokenizer
from tests.support.data import trained

EXE = str(Path(sys.executable).with_name("pretrainjob"))

MINIMAL = {
    "tokenizer": {"uri": "s3://bucket/tokenizers/bpe/"},
    "data": {"train": "s3://bucket/datasets/x/train", "sequenceLength": 128},
    "training": {"globalBatchSamples": 16, "microBatchSize": 4},
}


def _with(path: str, value):
    """MINIMAL with one dotted path set (None deletes it)."""
    spec = yaml.safe_load(yaml.safe_dump(MINIMAL))
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return spec


def test_a_minimal_spec_gets_documented_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.model.architecture == "gpt2" and spec.objective.type == "clm"
    assert spec.optimizer.name == "adamw" and spec.training.precision == "auto"
    assert spec.workers.world_size == 1 and spec.checkpoint.keep == 3
    assert spec.training.batch_samples(128) == 16


def test_global_batch_in_tokens_is_converted_to_samples():
    spec = parse_spec(_with("training", {"globalBatchTokens": 4096, "microBatchSize": 4}))
    assert spec.training.batch_samples(128) == 32


BAD = [
    ("tokenizer.uri", None, "spec.tokenizer.uri: required"),
    ("data.train", None, "spec.data.train: required"),
    ("data.sequenceLength", "long", "spec.data.sequenceLength: must be an integer, got 'long'"),
    ("data.sequenceLength", 4, "spec.data.sequenceLength: must be >= 8, got 4"),
    ("data.sequenceLength", 4096, "spec.data.sequenceLength: 4096 exceeds the model's 1024 positions"),
    ("training.microBatchSize", 0, "spec.training.microBatchSize: must be >= 1, got 0"),
    ("training.microBatchSize", True, "spec.training.microBatchSize: must be an integer, got True"),
    ("training.globalBatchSamples", 10, "10 samples per step cannot be split into micro batches of 4 over 1"),
    ("training.globalBatchTokens", 4096, "give exactly one of globalBatchTokens and globalBatchSamples"),
    ("training.precison", "bf16", "spec.training.precison: unknown field; did you mean 'precision'?"),
    ("training.precision", "fp8", "spec.training.precision: 'fp8' is not one of auto, bf16, fp32"),
    ("training.parallelism", "tp", "spec.training.parallelism: 'tp' is not one of ddp, fsdp"),
    ("optimizer.lr", 0, "spec.optimizer.lr: must be > 0.0, got 0"),
    ("optimizer.name", "sgd", "spec.optimizer.name: 'sgd' is not one of adamw, lamb"),
    ("optimizer.schedule", "step", "spec.optimizer.schedule: 'step' is not one of cosine, linear, constant"),
    ("optimizer.beta2", 1.5, "spec.optimizer.beta2: must be <= 1.0, got 1.5"),
    ("objective.type", "mlm", "spec.objective.type: mlm needs an encoder architecture, but model.architecture is gpt2"),
    ("objective.type", "electra", "spec.objective.type: electra trains an ELECTRA generator and discriminator; set "),
    ("objective.electra.discriminatorWeight", 0, "spec.objective.electra.discriminatorWeight: must be > 0.0"),
    ("objective.distillation.studentInit", "teacher", "spec.objective.distillation.teacher: required by studentInit"),
    ("objective.distillation.temperature", 0, "spec.objective.distillation.temperature: must be > 0.0"),
    ("objective.sentence.task", "nsp", "spec.objective.sentence.task: nsp is a second loss beside masked LM; set"),
    ("evaluation.probes.tasks", ["sentiment"], "spec.evaluation.probes.tasks: unknown task ['sentiment']; the tasks"),
    ("evaluation.probes.everySteps", -1, "spec.evaluation.probes.everySteps: must be >= 0, got -1"),
    ("evaluation.probes.maxExamples", 2, "spec.evaluation.probes.maxExamples: must be >= 10, got 2"),
    ("objective.mlm.masking", "sentence", "'sentence' is not one of token, whole-word, span"),
    ("objective.mlm.probability", 0, "spec.objective.mlm.probability: must be > 0.0"),
    ("objective.mlm.randomFraction", 0.5, "maskFraction + randomFraction = 1.3 exceeds 1"),
    ("objective.mlm.probability", 1.0, "spec.objective.mlm.probability: must be < 1.0, got 1.0"),
    ("objective.mlm.meanSpanLength", 12.0, "spec.objective.mlm: meanSpanLength = 12 exceeds maxSpanLength = 10"),
    ("model.architecture", "mt5", "spec.model.architecture: 'mt5' is not one of gpt2, llama, bert, roberta"),
    (
        "objective.type",
        "span-corruption",
        "spec.objective.type: span-corruption needs an encoder-decoder architecture, but model.architecture is "
        "gpt2; use one of t5, bart",
    ),
    ("objective.type", "denoising", "spec.objective.type: denoising needs an encoder-decoder architecture"),
    ("objective.spanCorruption.noiseDensity", 0.6, "spec.objective.spanCorruption.noiseDensity: must be <= 0.5"),
    ("objective.spanCorruption.noiseDensity", 0, "spec.objective.spanCorruption.noiseDensity: must be > 0.0"),
    ("objective.spanCorruption.meanNoiseSpanLength", 0.5, "meanNoiseSpanLength: must be >= 1.0, got 0.5"),
    ("objective.denoising.poissonLambda", 0, "spec.objective.denoising.poissonLambda: must be > 0.0"),
    ("objective.denoising.maskRatio", 1.0, "spec.objective.denoising.maskRatio: must be <= 0.9"),
    ("model.init", "pretrained", "spec.model.from: required for init: pretrained"),
    ("model.from", "s3://bucket/models/x", "spec.model.from: only for init: pretrained"),
    ("model.extendVocab", True, "spec.model.extendVocab: only for init: pretrained"),
    ("model.config", [1], "spec.model.config: must be a mapping, got list"),
    ("data.train", "gs://bucket/x", "spec.data.train: 'gs://bucket/x' is not a valid URI"),
    ("tokenizer.uri", "s3://B/x", "spec.tokenizer.uri: 's3://B/x' is not a valid URI"),
    ("checkpoint.uri", "s3:/bucket", "spec.checkpoint.uri: 's3:/bucket' is not a valid URI"),
    ("checkpoint.everySteps", 0, "spec.checkpoint.everySteps: must be >= 1, got 0"),
    ("workers.replicas", 0, "spec.workers.replicas: must be >= 1, got 0"),
    (
        "workers.resources",
        {"limits": {"nvidia.com/gpu": 8}},
        "spec.workers.resources: asks for 8 GPUs per pod but workers.procsPerWorker is 1",
    ),
    ("metrics.port", 70000, "spec.metrics.port: must be <= 65535, got 70000"),
    ("storage.addressingStyle", "dns", "'dns' is not one of auto, path, virtual"),
    ("failurePolicy.maxRestarts", -1, "spec.failurePolicy.maxRestarts: must be >= 0, got -1"),
    ("failurePolicy.maxPreemptions", -2, "spec.failurePolicy.maxPreemptions: must be >= -1, got -2"),
    (
        "metrics.port",
        29500,
        "spec.metrics.port: 29500 is the workers' rendezvous port (rank 0 could not bind both); use another port, "
        "e.g. 9400",
    ),
    ("training.stallTimeoutSeconds", 0, "spec.training.stallTimeoutSeconds: must be >= 1, got 0"),
    (
        "training.stallTimeoutSeconds",
        300,
        "spec.training.stallTimeoutSeconds: 300 must exceed storage.retryTimeoutSeconds (300): a rank waiting out a "
        "storage outage is not stalled",
    ),
    ("storage.retryTimeoutSeconds", -1, "spec.storage.retryTimeoutSeconds: must be >= 0, got -1"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v}" for p, v, _ in BAD])
def test_bad_specs_are_rejected_with_the_field_path_and_the_fix(path, value, message):
    with pytest.raises(ConfigError) as err:
        parse_spec(_with(path, value))
    assert message in str(err.value)


def test_sequence_length_may_grow_with_the_positions_override():
    spec = _with("data.sequenceLength", 4096)
    spec["model"] = {"config": {"n_positions": 4096}}
    assert parse_spec(spec).data.sequence_length == 4096
    roberta = _with("data.sequenceLength", 513)
    roberta["model"] = {"architecture": "roberta"}
    roberta["objective"] = {"type": "mlm"}
    with pytest.raises(ConfigError, match="513 exceeds the model's 512 positions"):
        parse_spec(roberta)


def test_world_size_counts_in_batch_divisibility():
    spec = _with("workers", {"replicas": 2, "procsPerWorker": 4})
    with pytest.raises(ConfigError, match=r"micro batches of 4 over 8 processes .* use a multiple of 32 samples"):
        parse_spec(spec)


def _elastic(replicas: int, min_replicas: int, **training):
    spec = _with("workers", {"replicas": replicas, "minReplicas": min_replicas})
    spec["training"].update(training)
    return spec


def test_min_replicas_defaults_to_replicas_so_a_job_is_not_elastic_unless_asked():
    workers = parse_spec(_with("workers", {"replicas": 4})).workers
    assert (workers.min_replicas, workers.min_size, workers.elastic, list(workers.sizes())) == (0, 4, False, [4])
    elastic = parse_spec(_elastic(4, 2, globalBatchSamples=48)).workers
    assert (elastic.min_size, elastic.elastic, list(elastic.sizes())) == (2, True, [2, 3, 4])


def test_min_replicas_above_replicas_is_refused_naming_both_fields():
    with pytest.raises(ConfigError) as err:
        parse_spec(_elastic(2, 3, globalBatchSamples=48))
    assert "spec.workers.minReplicas: 3 exceeds workers.replicas 2 (the most workers)" in str(err.value)


def test_an_elastic_job_needs_a_global_batch_that_splits_over_every_size_in_its_range():
    # 16 samples in micro batches of 4 split over 4 and 2 workers, not over 3: the fix names the common multiple.
    with pytest.raises(ConfigError) as err:
        parse_spec(_elastic(4, 2))
    message = str(err.value)
    assert "spec.training.globalBatchSamples: 16 samples per step cannot be split into micro batches of 4" in message
    assert "from workers.minReplicas 2 to workers.replicas 4: not on 3 workers" in message
    assert "use a multiple of 48 samples" in message and "narrow workers.minReplicas..replicas" in message
    assert parse_spec(_elastic(4, 2, globalBatchSamples=48)).workers.min_size == 2
    assert parse_spec(_elastic(4, 4)).workers.elastic is False  # minReplicas = replicas: one size, which fits


def test_the_elastic_batch_fix_is_given_in_tokens_when_the_batch_is_given_in_tokens():
    spec = _elastic(3, 2, globalBatchTokens=8 * 128)
    del spec["training"]["globalBatchSamples"]
    with pytest.raises(ConfigError) as err:
        parse_spec(spec)
    assert "spec.training.globalBatchTokens: 8 samples per step" in str(err.value)
    assert "use a multiple of 24 samples (3072 tokens)" in str(err.value)


def test_a_whole_manifest_is_accepted_and_its_name_checked():
    manifest = {"apiVersion": API_VERSION, "kind": "PretrainJob", "metadata": {"name": "gpt-small"}, "spec": MINIMAL}
    job = parse_job(manifest)
    assert job.name == "gpt-small" and job.spec.data.sequence_length == 128
    long_name = {**manifest, "metadata": {"name": "x" * 60}}
    with pytest.raises(ConfigError, match=r"metadata.name: 60 characters; at most 51"):
        parse_job(long_name)
    with pytest.raises(ConfigError, match=r"metadata.name: 'GPT_small' must be lower-case"):
        parse_job({**manifest, "metadata": {"name": "GPT_small"}})
    with pytest.raises(ConfigError, match="apiVersion: must be"):
        parse_job({**manifest, "apiVersion": "v1"})


def test_to_dict_round_trips_through_the_parser():
    spec = parse_spec(MINIMAL)
    assert parse_spec(to_dict(spec)) == spec


def test_multi_document_files_skip_other_kinds(tmp_path):
    job = {"apiVersion": API_VERSION, "kind": "PretrainJob", "metadata": {"name": "a"}, "spec": MINIMAL}
    f = tmp_path / "all.yaml"
    f.write_text(yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Secret"}, job, {**job, "metadata": {"name": "b"}}]))
    assert [j.name for j in load_jobs(f)] == ["a", "b"]


def test_the_schema_does_not_import_torch():
    code = "import sys, pretrain_trainer.config; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_validate_prints_one_line_per_problem_with_file_and_field(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump({"apiVersion": API_VERSION, "kind": "PretrainJob", "metadata": {"name": "ok"}, "spec": MINIMAL})
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with("optimizer", {"lr": -1, "name": "sgd"})))
    ok = subprocess.run([EXE, "validate", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "1 valid" in ok.stdout
    res = subprocess.run(
        [EXE, "validate", str(good), str(bad), str(tmp_path / "missing.yaml")], capture_output=True, text=True
    )
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert f"{bad}: spec.optimizer.name: 'sgd' is not one of adamw, lamb" in lines
    assert f"{bad}: spec.optimizer.lr: must be > 0.0, got -1.0" in lines
    assert any(line.startswith(f"{tmp_path / 'missing.yaml'}: cannot read") for line in lines)


def test_validate_refuses_a_local_tokenizer_with_too_few_sentinels_for_span_corruption(tmp_path, capsys):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=500, objective="span-corruption", sentinels=10)
    save_tokenizer(trained(spec), spec, str(tmp_path / "tok"))
    job = {
        "tokenizer": {"uri": str(tmp_path / "tok")},
        "data": {"train": "s3://bucket/data/train", "sequenceLength": 512},
        "model": {"architecture": "t5"},
        "objective": {"type": "span-corruption"},
        "training": {"globalBatchSamples": 8, "microBatchSize": 8},
    }
    path = tmp_path / "t5.yaml"
    path.write_text(yaml.safe_dump(job))
    assert main(["validate", str(path)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith(f"{path}: spec.tokenizer.uri: ") and "has 10 sentinel tokens" in printed
    assert "up to 28 noise spans" in printed and "--objective span-corruption" in printed
    job["data"]["sequenceLength"] = 128  # 141 raw tokens: 21 noise tokens in 7 spans
    path.write_text(yaml.safe_dump(job))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out


def test_validate_refuses_nan_and_infinity_in_any_float_field(tmp_path):
    """NaN passes every range check (all comparisons are False): `minLrRatio: .nan` once trained to "Succeeded"."""
    bad = tmp_path / "nan.yaml"
    text = yaml.safe_dump(_with("optimizer", {"lr": 1e-3}))
    bad.write_text(text.replace("lr: 0.001", "lr: .inf\n  minLrRatio: .nan\n  weightDecay: -.inf"))
    res = subprocess.run([EXE, "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    lines = res.stdout.strip().splitlines()
    assert f"{bad}: spec.optimizer.minLrRatio: must be a finite number, got nan" in lines
    assert f"{bad}: spec.optimizer.lr: must be a finite number, got inf" in lines
    assert f"{bad}: spec.optimizer.weightDecay: must be a finite number, got -inf" in lines
