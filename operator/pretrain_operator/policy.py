"""The operator-wide policy: what a job author may choose for the pods the operator creates on their behalf.

Cluster admins set it with the operator's flags (the chart's `policy` values); `plan()` checks the spec in effect
against it before any child exists, and a violation fails the job with reason `PolicyViolation`, naming the field
and the rule. Checked every reconcile, so a stricter policy also stops jobs that no longer comply.

What no policy can allow is impossible anyway: the spec has no field for hostPath, privileged containers,
hostNetwork, hostPID or capabilities, and the pods' securityContext is fixed (hardening.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pretrain_trainer.config import PretrainJobSpec
from pretrain_trainer.spec_schema import Problem

# Annotations that change how the runtime confines a container (AppArmor, the legacy seccomp annotations).
DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES = (
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "container.seccomp.security.alpha.kubernetes.io/",
)
# Tolerations that would put training pods on control-plane nodes.
DEFAULT_FORBIDDEN_TOLERATION_KEYS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclass(frozen=True)
class Policy:
    """Empty `allowed_registries` / `allowed_service_accounts` mean no restriction; the defaults forbid only what
    no training job needs."""

    allowed_registries: tuple[str, ...] = ()  # image prefixes, e.g. "registry.corp/ml/"
    require_digest: bool = False  # spec.image must be pinned as ...@sha256:<64 hex>
    allowed_service_accounts: tuple[str, ...] = ()
    allow_service_account_token: bool = True  # may workers.automountServiceAccountToken be true
    allow_writable_root_filesystem: bool = False  # may workers.readOnlyRootFilesystem be false
    forbidden_annotation_prefixes: tuple[str, ...] = DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES
    forbidden_toleration_keys: tuple[str, ...] = DEFAULT_FORBIDDEN_TOLERATION_KEYS


def _image_violations(image: str, policy: Policy) -> list[Problem]:
    if not image:  # the operator's default image: the admin's own choice
        return []
    out = []
    if policy.allowed_registries and not any(image.startswith(prefix) for prefix in policy.allowed_registries):
        allowed = ", ".join(policy.allowed_registries)
        out.append(Problem("spec.image", f"{image!r} is not from an allowed registry ({allowed})"))
    digest = image.rpartition("@sha256:")[2] if "@sha256:" in image else ""
    if policy.require_digest and (len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest)):
        out.append(Problem("spec.image", f"{image!r} must be pinned by digest (image@sha256:<64 hex digits>)"))
    return out


def _toleration_violations(tolerations: list[dict[str, Any]], policy: Policy) -> list[Problem]:
    out = []
    for n, toleration in enumerate(tolerations):
        key = toleration.get("key") or ""
        # An empty key with operator Exists tolerates every taint, the forbidden ones included.
        if key in policy.forbidden_toleration_keys or (not key and policy.forbidden_toleration_keys):
            shown = key or "every taint (empty key)"
            out.append(Problem(f"spec.workers.tolerations[{n}]", f"tolerating {shown} is forbidden by policy"))
    return out


def violations(spec: PretrainJobSpec, policy: Policy) -> list[Problem]:
    """Every way `spec` breaks `policy` (empty when it complies)."""
    workers = spec.workers
    out = _image_violations(spec.image, policy)
    account = workers.service_account_name
    if account and policy.allowed_service_accounts and account not in policy.allowed_service_accounts:
        allowed = ", ".join(policy.allowed_service_accounts)
        out.append(Problem("spec.workers.serviceAccountName", f"{account!r} is not an allowed one ({allowed})"))
    if workers.automount_service_account_token and not policy.allow_service_account_token:
        out.append(
            Problem("spec.workers.automountServiceAccountToken", "mounting the ServiceAccount token is forbidden")
        )
    if not workers.read_only_root_filesystem and not policy.allow_writable_root_filesystem:
        out.append(Problem("spec.workers.readOnlyRootFilesystem", "a writable root filesystem is forbidden"))
    for key in workers.annotations:
        prefix = next((p for p in policy.forbidden_annotation_prefixes if key.startswith(p)), None)
        if prefix is not None:
            out.append(Problem(f"spec.workers.annotations.{key}", f"annotations under {prefix} are forbidden"))
    out += _toleration_violations(workers.tolerations, policy)
    return out


__all__ = ["DEFAULT_FORBIDDEN_ANNOTATION_PREFIXES", "DEFAULT_FORBIDDEN_TOLERATION_KEYS", "Policy", "violations"]
