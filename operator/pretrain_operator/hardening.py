"""What makes a worker pod hard to misuse: a non-root user, no privilege escalation, no capabilities, the runtime's
default seccomp profile, a read-only root filesystem, and no ServiceAccount token unless the spec asks for one.
The spec may choose another non-root user id (`workers.runAsUser`), and, where the operator's policy allows it
(policy.py), a writable root filesystem or the token; nothing else of this is the job author's to change.

The trainer writes only to emptyDirs: /tmp (run folder, checkpoint staging, caches), /dev/shm (memory-backed) and
the termination log; the cache variables below point every library that would write under $HOME there too, so
any image, not only ours, runs with a read-only root filesystem.
"""

from __future__ import annotations

from typing import Any

from pretrain_trainer.spec_workers import WorkersSpec

CACHE_ENV = {
    "XDG_CACHE_HOME": "/tmp/cache",
    "HF_HOME": "/tmp/hf",
    "TRITON_CACHE_DIR": "/tmp/triton",
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor",
    "MPLCONFIGDIR": "/tmp/matplotlib",
}


def pod_security_context(workers: WorkersSpec) -> dict[str, Any]:
    # Set explicitly so that an image whose USER is root or a name still runs non-root; fsGroup makes the
    # emptyDirs writable for that user.
    return {
        "runAsNonRoot": True,
        "runAsUser": workers.run_as_user,
        "runAsGroup": workers.run_as_user,
        "fsGroup": workers.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(workers: WorkersSpec) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": workers.read_only_root_filesystem,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def cache_env() -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in CACHE_ENV.items()]


__all__ = ["CACHE_ENV", "cache_env", "container_security_context", "pod_security_context"]
