"""The operator-wide policy: a job author with create rights on PretrainJobs chooses the image, ServiceAccount,
annotations and tolerations of pods the operator creates; the policy (operator flags, the chart's `policy` values)
bounds those choices, and a violation fails the job with `Failed/PolicyViolation` naming the field before any pod
exists."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pretrain_operator.main import config_from, parse_args
from pretrain_operator.policy import DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES, Policy
from tests.unit.test_operator_lifecycle import SETTINGS, Cluster, new_job

DIGEST = "sha256:" + "ab" * 32
STRICT = Policy(
    allowed_registries=("registry.corp/ml/",),
    require_digest=True,
    allowed_service_accounts=("trainer",),
    allow_service_account_token=False,
)


def reconcile(policy: Policy, **spec: object) -> Cluster:
    cluster = Cluster(new_job(**spec), settings=replace(SETTINGS, policy=policy))
    cluster.reconcile()
    return cluster


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"image": "docker.io/evil/miner:latest"}, "spec.image"),
        ({"image": "registry.corp/ml/trainer:1.0"}, "spec.image"),  # allowed registry, but no digest
        ({"image": "registry.corp/ml-evil/trainer@" + DIGEST}, "spec.image"),  # a prefix of the prefix is not it
        ({"workers": {"serviceAccountName": "cluster-admin-sa"}}, "spec.workers.serviceAccountName"),
        ({"workers": {"automountServiceAccountToken": True}}, "spec.workers.automountServiceAccountToken"),
        (
            {"workers": {"annotations": {"container.apparmor.security.beta.kubernetes.io/trainer": "unconfined"}}},
            "spec.workers.annotations.container.apparmor.security.beta.kubernetes.io/trainer",
        ),
        (
            {"workers": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}},
            "spec.workers.tolerations[0]",
        ),
        ({"workers": {"tolerations": [{"operator": "Exists"}]}}, "spec.workers.tolerations[0]"),
        ({"workers": {"readOnlyRootFilesystem": False}}, "spec.workers.readOnlyRootFilesystem"),
    ],
)
def test_a_violation_fails_the_job_naming_the_field_before_any_pod_exists(spec, field):
    cluster = reconcile(STRICT, **spec)
    assert cluster.status["phase"] == "Failed"
    assert cluster.condition("Failed")["reason"] == "PolicyViolation"
    assert field in cluster.status["message"]
    assert not cluster.pods and cluster.config_map is None
    assert [e.reason for e in cluster.last.events] == ["PolicyViolation"]


def test_a_compliant_job_starts_under_the_strict_policy():
    cluster = reconcile(STRICT, image="registry.corp/ml/trainer@" + DIGEST, workers={"serviceAccountName": "trainer"})
    assert cluster.status["phase"] == "Pending" and len(cluster.pods) == 2


def test_the_default_policy_refuses_only_runtime_overrides_and_control_plane_tolerations():
    cluster = reconcile(
        Policy(),
        image="docker.io/anyone/trainer:dev",
        workers={
            "serviceAccountName": "s3-reader",
            "automountServiceAccountToken": True,
            "annotations": {"team": "nlp"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    )
    assert cluster.status["phase"] == "Pending"


def test_a_job_fixed_after_a_violation_starts():
    cluster = reconcile(STRICT, image="docker.io/evil/miner:latest")
    assert cluster.status["phase"] == "Failed"
    cluster.edit(image="registry.corp/ml/trainer@" + DIGEST)
    cluster.reconcile()
    assert cluster.status["phase"] == "Pending" and len(cluster.pods) == 2


def test_operator_flags_build_the_policy():
    args = parse_args(
        [
            "--all-namespaces",
            "--allowed-registry",
            "registry.corp/ml/",
            "--require-image-digest",
            "--allowed-service-account",
            "trainer",
            "--forbid-service-account-token",
            "--allow-writable-root-filesystem",
            "--forbidden-toleration-key",
            "",
        ]
    )
    policy = config_from(args).lifecycle.policy
    assert policy == Policy(
        allowed_registries=("registry.corp/ml/",),
        require_digest=True,
        allowed_service_accounts=("trainer",),
        allow_service_account_token=False,
        allow_writable_root_filesystem=True,
        forbidden_toleration_keys=(),
    )
    assert config_from(parse_args(["--all-namespaces"])).lifecycle.policy == Policy()
    assert Policy().forbidden_annotation_prefixes == DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES
