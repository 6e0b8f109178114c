"""Bad PretrainJob manifests, and which layer refuses each: the CRD's openAPIV3Schema (the API server, emulated by
`tests.support.crd_schema.schema_errors`), the operator's semantic check (`pretrain_operator.admission.check`,
which the operator runs before it creates anything and the trainer runs again), or both.

The table documents where each rule lives. Types, enums, bounds, required keys and unknown fields are in both
(the CRD is generated from the same dataclasses the operator parses with); rules across fields, URI syntax and the
RFC 1035 name are the operator's alone; the shape of free-form Kubernetes fields (resources, labels) is both's.
Every message must name the field path, so that `kubectl apply` or the job's status says what to fix.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pretrain_operator.admission import check
from pretrain_trainer.config import ConfigError
from pretrain_trainer.contract import API_VERSION, KIND
from tests.support.crd_schema import schema_errors

BASE: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {"name": "gpt-small", "namespace": "ml"},
    "spec": {
        "tokenizer": {"uri": "s3://corpus/tokenizer.json"},
        "data": {"train": "s3://corpus/train", "validation": "s3://corpus/validation", "sequenceLength": 256},
        "workers": {"replicas": 2, "procsPerWorker": 1},
        "training": {"maxSteps": 1000, "globalBatchTokens": 8192, "microBatchSize": 4},
        "checkpoint": {"uri": "s3://ckpt/gpt-small"},
    },
}

_DELETE = object()


def manifest(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes, e.g. manifest(**{"spec.workers.replicas": -1}); _DELETE removes a key."""
    out = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return out


def operator_errors(m: dict[str, Any]) -> list[str]:
    try:
        check(m["metadata"]["name"], m["metadata"].get("namespace", "default"), m["spec"])
    except ConfigError as err:
        return [str(p) for p in err.problems]
    return []


ROWS = [
    # id, changes, field path the messages must name, layer
    ("unknown-field-typo", {"spec.training.microBatchSzie": 4}, "spec.training.microBatchSzie", "both"),
    ("unknown-top-level-field", {"spec.replicas": 4}, "spec.replicas", "both"),
    ("string-for-integer", {"spec.training.maxSteps": "1000"}, "spec.training.maxSteps", "both"),
    ("string-for-boolean", {"spec.suspend": "yes"}, "spec.suspend", "both"),
    ("spec-not-an-object", {"spec": "gpt2 please"}, "spec", "both"),
    ("negative-replicas", {"spec.workers.replicas": -1}, "spec.workers.replicas", "both"),
    ("zero-replicas", {"spec.workers.replicas": 0}, "spec.workers.replicas", "both"),
    ("negative-max-restarts", {"spec.failurePolicy.maxRestarts": -1}, "spec.failurePolicy.maxRestarts", "both"),
    ("negative-ttl", {"spec.ttlSecondsAfterFinished": -5}, "spec.ttlSecondsAfterFinished", "both"),
    ("sequence-length-below-8", {"spec.data.sequenceLength": 4}, "spec.data.sequenceLength", "both"),
    ("enum-objective-type", {"spec.objective.type": "seq2seq"}, "spec.objective.type", "both"),
    ("enum-masking", {"spec.objective.mlm.masking": "random"}, "spec.objective.mlm.masking", "both"),
    ("enum-precision", {"spec.training.precision": "fp16"}, "spec.training.precision", "both"),
    ("enum-parallelism", {"spec.training.parallelism": "tp"}, "spec.training.parallelism", "both"),
    ("enum-clean-pod-policy", {"spec.cleanPodPolicy": "Never"}, "spec.cleanPodPolicy", "both"),
    ("enum-architecture", {"spec.model.architecture": "mt5"}, "spec.model.architecture", "both"),
    ("enum-addressing-style", {"spec.storage.addressingStyle": "dns"}, "spec.storage.addressingStyle", "both"),
    ("mlm-probability-zero", {"spec.objective.mlm.probability": 0}, "spec.objective.mlm.probability", "both"),
    ("learning-rate-zero", {"spec.optimizer.lr": 0}, "spec.optimizer.lr", "both"),
    ("beta2-above-one", {"spec.optimizer.beta2": 1.5}, "spec.optimizer.beta2", "both"),
    ("metrics-port-70000", {"spec.metrics.port": 70000}, "spec.metrics.port", "both"),
    ("shm-size-not-a-string", {"spec.workers.shmSize": 8}, "spec.workers.shmSize", "both"),
    ("tolerations-not-a-list", {"spec.workers.tolerations": {"key": "gpu"}}, "spec.workers.tolerations", "both"),
    # Free-form in the CRD; once went into pods the API server refuses (found by the Hypothesis test).
    ("affinity-empty-key", {"spec.workers.affinity": {"": None}}, "spec.workers.affinity.", "operator"),
    (
        "affinity-term-without-topology-key",
        {"spec.workers.affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}}},
        "spec.workers.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
        "operator",
    ),
    (
        "affinity-weight-as-string",
        {
            "spec.workers.affinity": {
                "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": "5", "preference": {}}]}
            }
        },
        "spec.workers.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight",
        "operator",
    ),
    ("missing-tokenizer-uri", {"spec.tokenizer.uri": _DELETE}, "tokenizer.uri", "both"),
    ("missing-tokenizer", {"spec.tokenizer": _DELETE}, "tokenizer", "both"),
    ("missing-data-train", {"spec.data.train": _DELETE}, "data.train", "both"),
    ("name-52-characters", {"metadata.name": "a" * 52}, "metadata.name", "both"),
    ("name-upper-case", {"metadata.name": "GPT-small"}, "metadata.name", "operator"),
    ("name-underscore", {"metadata.name": "gpt_small"}, "metadata.name", "operator"),
    ("name-ends-with-dash", {"metadata.name": "gpt-"}, "metadata.name", "operator"),
    ("s3-bucket-upper-case", {"spec.data.train": "s3://My_Bucket/train"}, "spec.data.train", "operator"),
    ("s3-bucket-too-short", {"spec.checkpoint.uri": "s3://ab/ckpt"}, "spec.checkpoint.uri", "operator"),
    ("unknown-uri-scheme", {"spec.tokenizer.uri": "gs://corpus/tok.json"}, "spec.tokenizer.uri", "operator"),
    ("sequence-over-positions", {"spec.data.sequenceLength": 2048}, "spec.data.sequenceLength", "operator"),
    ("mlm-with-gpt2", {"spec.objective.type": "mlm"}, "spec.objective.type", "operator"),
    (
        "clm-with-bert",
        {"spec.model.architecture": "bert", "spec.data.sequenceLength": 128, "spec.training.globalBatchTokens": 4096},
        "spec.objective.type",
        "operator",
    ),
    ("batch-not-divisible", {"spec.training.microBatchSize": 3}, "spec.training.globalBatchTokens", "operator"),
    (
        "batch-samples-not-divisible",
        {"spec.training.globalBatchTokens": 0, "spec.training.globalBatchSamples": 12},
        "spec.training.globalBatchSamples",
        "operator",
    ),
    ("batch-tokens-not-multiple-of-seq", {"spec.training.globalBatchTokens": 8000}, "globalBatchTokens", "operator"),
    ("both-batch-sizes", {"spec.training.globalBatchSamples": 32}, "spec.training", "operator"),
    ("neither-batch-size", {"spec.training.globalBatchTokens": 0}, "spec.training", "operator"),
    (
        "gpus-differ-from-procs",
        {"spec.workers.resources": {"limits": {"nvidia.com/gpu": 8}}},
        "spec.workers.resources",
        "operator",
    ),
    ("pretrained-without-from", {"spec.model.init": "pretrained"}, "spec.model.from", "operator"),
    ("from-with-scratch", {"spec.model.from": "s3://models/gpt2"}, "spec.model.from", "operator"),
    ("extend-vocab-with-scratch", {"spec.model.extendVocab": True}, "spec.model.extendVocab", "operator"),
    (
        "mask-plus-random-over-one",
        {
            "spec.model.architecture": "bert",
            "spec.objective": {"type": "mlm", "mlm": {"maskFraction": 0.8, "randomFraction": 0.3}},
        },
        "spec.objective.mlm",
        "operator",
    ),
    # NaN passes every range check and cannot travel in JSON, but YAML has `.nan` and `.inf` (pretrainjob validate,
    # the local runner): the typed parser refuses non-finite numbers in every float field.
    ("min-lr-ratio-nan", {"spec.optimizer.minLrRatio": float("nan")}, "spec.optimizer.minLrRatio", "operator"),
    ("learning-rate-infinite", {"spec.optimizer.lr": float("inf")}, "spec.optimizer.lr", "operator"),
    ("grad-clip-minus-infinity", {"spec.optimizer.gradClip": float("-inf")}, "spec.optimizer.gradClip", "both"),
    # Credentials in a URI would be copied into the ConfigMap and every checkpoint manifest: refused, never echoed.
    ("endpoint-with-password", {"spec.storage.endpoint": "https://ak:pw@s3.example"}, "storage.endpoint", "operator"),
    ("uri-with-password", {"spec.checkpoint.uri": "s3://ak:pw@ckpt/run"}, "spec.checkpoint.uri", "operator"),
    (
        "endpoint-with-presigned-query",
        {"spec.storage.endpoint": "https://s3.example/?X-Amz-Credential=AKIA&X-Amz-Signature=ff"},
        "spec.storage.endpoint",
        "operator",
    ),
    ("enum-non-finite-action", {"spec.training.nonFinite.action": "ignore"}, "spec.training.nonFinite.action", "both"),
    (
        "rollback-without-checkpoints",
        {"spec.training.nonFinite.action": "rollback", "spec.checkpoint.uri": _DELETE},
        "spec.training.nonFinite.action",
        "operator",
    ),
    ("resume-from-negative", {"spec.checkpoint.resumeFrom": -1}, "spec.checkpoint.resumeFrom", "both"),
    # A local path in a cluster job is each pod's own disk: data missing, checkpoints lost on every restart.
    ("checkpoint-on-local-disk", {"spec.checkpoint.uri": "file:///mnt/ckpt"}, "spec.checkpoint.uri", "operator"),
    ("data-on-local-disk", {"spec.data.train": "/data/train"}, "spec.data.train", "operator"),
    ("label-value-not-a-string", {"spec.workers.labels": {"tier": 1}}, "spec.workers.labels", "both"),
    ("pull-secret-not-a-name", {"spec.workers.imagePullSecrets": [{"name": "reg"}]}, "imagePullSecrets", "both"),
]


@pytest.mark.parametrize(("changes", "field", "layer"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_manifest_is_refused_naming_its_field(changes, field, layer):
    bad = manifest(**changes)
    schema, operator = schema_errors(bad), operator_errors(bad)
    assert schema or operator, "accepted by both layers"
    combined = "\n".join(schema + operator)
    assert field in combined, f"no message names {field}:\n{combined}"
    caught_by = {(True, True): "both", (True, False): "schema", (False, True): "operator"}[bool(schema), bool(operator)]
    assert caught_by == layer, f"caught by {caught_by}, the table says {layer}:\nschema: {schema}\noperator: {operator}"
    if operator:
        assert any(field in msg for msg in operator), f"the operator's messages do not name {field}: {operator}"


def test_the_table_has_enough_rows_and_unique_ids():
    ids = [r[0] for r in ROWS]
    assert len(ids) >= 24
    assert len(set(ids)) == len(ids)
    # Nothing is the schema's alone: the operator must cope with whatever the API server lets through.
    assert {r[3] for r in ROWS} == {"operator", "both"}


def test_the_valid_base_manifest_passes_both_layers():
    """So that every row of the table fails for its own change."""
    assert schema_errors(BASE) == []
    assert operator_errors(BASE) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"spec.model.architecture": "bert", "spec.objective.type": "mlm", "spec.data.sequenceLength": 512},
        {"spec.model.init": "pretrained", "spec.model.from": "s3://models/gpt2", "spec.model.extendVocab": True},
        {"spec.workers.resources": {"limits": {"nvidia.com/gpu": 1}}, "spec.metrics.port": 0},
        {
            "spec.data.sequenceLength": 2048,
            "spec.model.config": {"n_positions": 2048},
            "spec.training.globalBatchTokens": 16384,
        },
        {"spec.training.globalBatchTokens": 0, "spec.training.globalBatchSamples": 16},
        {"metadata.name": "a" * 51, "spec.tokenizer.uri": "/opt/tokenizer.json"},
    ],
    ids=["bert-mlm", "continued-pretraining", "one-gpu", "longer-positions", "batch-samples", "longest-name"],
)
def test_near_misses_are_accepted_by_both_layers(changes):
    """Each rule refuses only what it should: neighbours of the bad rows are valid."""
    good = manifest(**changes)
    assert schema_errors(good) == []
    assert operator_errors(good) == []


def test_all_problems_are_reported_at_once():
    bad = manifest(
        **{"spec.workers.replicas": 0, "spec.training.precision": "fp16", "spec.metrics.port": -1, "metadata.name": "X"}
    )
    messages = "\n".join(operator_errors(bad))
    for field in ("spec.workers.replicas", "spec.training.precision", "spec.metrics.port", "metadata.name"):
        assert field in messages


def test_unknown_field_suggests_the_close_name():
    [message] = operator_errors(manifest(**{"spec.training.microBatchSzie": 4}))
    assert "did you mean 'microBatchSize'?" in message


def test_objective_mismatch_message_is_grammatical():
    bad = manifest(**{"spec.model.architecture": "bert", "spec.data.sequenceLength": 128})
    messages = "\n".join(operator_errors(bad))
    assert "needs a decoder architecture" in messages


def test_credentials_in_a_uri_are_refused_without_repeating_them_and_point_to_the_secret():
    errors = operator_errors(manifest(**{"spec.storage.endpoint": "https://user:s3cr3t-value@s3.example"}))
    assert errors and "storage.credentialsSecret" in errors[0]
    assert not any("s3cr3t-value" in e for e in errors)
    errors = operator_errors(manifest(**{"spec.data.train": "s3://user:s3cr3t-value@Bad_Bucket/x"}))
    assert errors and not any("s3cr3t-value" in e for e in errors)
