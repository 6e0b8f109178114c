"""What makes a worker pod hard to misuse: a non-root user, no privilege escalation, no capabilities, the runtime's
default seccomp profile, a read-only root filesystem, and no ServiceAccount token unless the spec asks for one
(and the operator's policy allows it, see policy.py).

The trainer writes only to emptyDirs: /tmp (run folder, checkpoint staging, caches), /dev/shm (memory-backed) and
the termination log; the cache variables below point every library that would write under $HOME there too, so
any image, not only ours, runs with a read-only root filesystem.
"""

from __future__ import annotations

from typing import Any

# The trainer image's user (images/trainer/Dockerfile); set explicitly so that an image whose USER is root or a
# name still runs non-root, and fsGroup makes the emptyDirs writable for it.
WORKER_UID = 1000
WORKER_GID = 1000
CACHE_ENV = {
    "XDG_CACHE_HOME": "/tmp/cache",
    "HF_HOME": "/tmp/hf",
    "TRITON_CACHE_DIR": "/tmp/triton",
    "TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor",
    "MPLCONFIGDIR": "/tmp/matplotlib",
}


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "runAsGroup": WORKER_GID,
        "fsGroup": WORKER_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def cache_env() -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in CACHE_ENV.items()]


__all__ = ["CACHE_ENV", "cache_env", "container_security_context", "pod_security_context"]
