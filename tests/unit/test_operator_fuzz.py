"""Property: for every manifest the CRD's schema admits (generated from that schema by Hypothesis), `plan()` returns
a plan, never raises; it creates pods only for specs `validate` accepts, and those pods are valid core/v1 Pods;
and a spec it refuses fails with a message naming a field (`InvalidSpec` or `PolicyViolation`), not through the
safety net that catches a step breaking on input the checks let through.

The generator follows the schema (types, enums, bounds, required keys, free-form maps and lists) and mixes in the
values that have broken operators before: URIs with credentials, local paths, huge numbers, strings where
numbers go, lists where maps go, names that are not names.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from pretrain_operator import naming
from pretrain_operator.admission import check
from pretrain_operator.lifecycle import Settings, plan
from pretrain_trainer.config import ConfigError
from pretrain_trainer.contract import API_VERSION, KIND
from tests.support.crd_schema import crd, schema_errors
from tests.support.jobs import deep_merge

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
DEEP: dict[str, Any] = {}
for _ in range(80):
    DEEP = {"d": DEEP}
CANNOT_HANDLE = "invalid spec: the operator cannot handle this job"
TRICKY_STRINGS = (
    "",
    "s3://bucket/prefix",
    "s3://bkt/x",
    "s3://ak:secret@bucket/x",
    "file:///tmp/x",
    "/data/train",
    "https://user:pw@minio:9000",
    "https://minio:9000/?X-Amz-Signature=ff",
    "8Gi",
    "lots",
    "500m",
    "trainer",
    "Not A Name",
    "node-role.kubernetes.io/control-plane",
    "container.apparmor.security.beta.kubernetes.io/trainer",
    "a" * 300,
    "\u00e9\u00e8",
    "${HOME}",
)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(TRICKY_STRINGS),
    st.text(max_size=12),
)
JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(TRICKY_STRINGS) | st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _integers(node: dict[str, Any]) -> st.SearchStrategy[int]:
    lo, hi = node.get("minimum"), node.get("maximum")
    if node.get("exclusiveMinimum") and lo is not None:
        lo += 1
    if node.get("exclusiveMaximum") and hi is not None:
        hi -= 1
    lo = -(2**63) if lo is None else int(lo)
    hi = 2**63 - 1 if hi is None else int(hi)
    edges = [v for v in (lo, lo + 1, hi, 2, 8, 1024, 10**6) if lo <= v <= hi]
    return st.sampled_from(edges) | st.integers(min_value=lo, max_value=hi)


def _numbers(node: dict[str, Any]) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=node.get("minimum"),
        max_value=node.get("maximum"),
        exclude_min=bool(node.get("exclusiveMinimum")),
        exclude_max=bool(node.get("exclusiveMaximum")),
        allow_nan=False,
        allow_infinity=False,
    )


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values `node` (an openAPIV3Schema node of the CRD) admits."""
    kind = node.get("type")
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if kind == "object" and "properties" in node:
        props = {k: from_schema(v) for k, v in node["properties"].items()}
        required = set(node.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        values = from_schema(node["additionalProperties"])
        return st.dictionaries(st.sampled_from(TRICKY_STRINGS) | st.text(max_size=10), values, max_size=3)
    if kind == "object" or node.get("x-kubernetes-preserve-unknown-fields"):
        return st.dictionaries(st.sampled_from(TRICKY_STRINGS) | st.text(max_size=10), JSON, max_size=3)
    if kind == "array":
        return st.lists(from_schema(node.get("items", {})), max_size=3)
    if kind == "integer":
        return _integers(node)
    if kind == "number":
        return _numbers(node)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.sampled_from(TRICKY_STRINGS) | st.text(max_size=node.get("maxLength", 30))
    return JSON


SPEC_SCHEMA = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
NAMES = st.just("tiny") | st.sampled_from(["a", "job-1", "x" * 51, "x" * 52, "Bad_Name", "9lives", "ends-"])


BASE_SPEC: dict[str, Any] = {
    "tokenizer": {"uri": "s3://bucket/tok"},
    "data": {"train": "s3://bucket/train"},
    "training": {"globalBatchSamples": 8, "microBatchSize": 8},
}


@st.composite
def one_section_changed(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with one top-level section generated from its schema: mostly valid specs, so that the pods
    and the later steps of `plan()` are exercised too, not only admission."""
    key = draw(st.sampled_from(sorted(SPEC_SCHEMA["properties"])))
    value = draw(from_schema(SPEC_SCHEMA["properties"][key]))
    base = BASE_SPEC.get(key)
    both_maps = isinstance(base, dict) and isinstance(value, dict)
    return {**BASE_SPEC, key: deep_merge(base, value) if both_maps else value}


@st.composite
def admitted_manifests(draw: st.DrawFn) -> dict[str, Any]:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": draw(NAMES), "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": draw(st.one_of(one_section_changed(), one_section_changed(), from_schema(SPEC_SCHEMA))),
    }
    assume(schema_errors(manifest) == [])
    return manifest


def validate_accepts(manifest: dict[str, Any]) -> bool:
    try:
        check(manifest["metadata"]["name"], "ml", manifest["spec"])
    except ConfigError:
        return False
    return True


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(admitted_manifests())
def test_every_manifest_the_crd_admits_gets_a_plan_and_pods_only_when_valid(manifest):
    out = plan(manifest, [], None, None, None, NOW, Settings())

    pods = [obj for obj in out.create if obj["kind"] == "Pod"]
    event("pods created" if pods else out.status["phase"])
    if pods:
        assert validate_accepts(manifest)
        assert out.status["phase"] == "Pending"
        kubernetes_validate.validate(pods[0], "1.30", strict=True)  # raises for anything the API server refuses
    elif out.status["phase"] == "Suspended":
        assert validate_accepts(manifest) and manifest["spec"]["suspend"] is True
    else:
        assert out.status["phase"] == "Failed", out.status
        assert not out.status["message"].startswith(CANNOT_HANDLE), out.status["message"]
        assert not validate_accepts(manifest) or "PolicyViolation" in str(out.status["conditions"])


@pytest.mark.parametrize(
    "spec",
    [
        # A billion pod manifests would hang the reconcile (the batch fits: 10**9 micro batches of 1).
        {"workers": {"replicas": 10**9}, "training": {"globalBatchSamples": 10**9, "microBatchSize": 1}},
        {"ttlSecondsAfterFinished": 2**62},  # overflowed the TTL's datetime once the job finished
        {"model": {"config": {"n_positions": "1024"}}},
        # Accepted by the operator once, then refused by every worker's bounded YAML reader.
        {"model": {"config": {"n_layer": 2, "extra": DEEP}}},
        {"workers": {"resources": {"limits": ["nvidia.com/gpu"]}}},
    ],
)
def test_specs_that_once_broke_the_operator_fail_with_a_field_named(spec):
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "tiny", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": {**BASE_SPEC, **spec},
    }
    out = plan(manifest, [], None, None, None, NOW, Settings())
    assert out.status["phase"] == "Failed" and not out.create
    assert not out.status["message"].startswith(CANNOT_HANDLE), out.status["message"]


def test_input_that_breaks_a_step_fails_the_job_once_instead_of_raising_on_every_reconcile():
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "tiny", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": BASE_SPEC,
    }
    # A pod someone else made with the job's labels and an attempt that is not a number.
    labels = {naming.JOB_LABEL: "tiny", naming.ATTEMPT_LABEL: "first"}
    pod = {"metadata": {"name": "tiny-worker-0", "labels": labels}, "status": {"phase": "Running"}}
    out = plan(manifest, [pod], None, None, None, NOW, Settings())
    assert out.status["phase"] == "Failed" and out.status["message"].startswith(CANNOT_HANDLE)
    assert [e.reason for e in out.events] == ["InvalidSpec"] and not out.create
    again = plan({**manifest, "status": out.status}, [pod], None, None, None, NOW, Settings())
    assert again.events == []
