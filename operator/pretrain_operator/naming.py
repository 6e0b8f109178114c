"""Names and labels of a PretrainJob's children: the one place that knows how they are spelled (the worker pods'
names, which the trainer's name check knows too, come from `pretrain_trainer.contract`).

<job>                      headless Service (the pods' DNS subdomain)
<job>-config               ConfigMap with the trainer's job.yaml
<job>-worker-<i>           worker Pod i, hostname <job>-worker-<i>.<job>.<namespace>.svc
<job>-spare-<i>            spare Pod i of an elastic job: a place held for worker i while it waits for capacity
"""

from __future__ import annotations

from typing import Any

from pretrain_trainer.contract import API_GROUP, pod_name

MANAGED_BY = "pretrain-operator"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
JOB_LABEL = f"{API_GROUP}/job-name"
INDEX_LABEL = f"{API_GROUP}/replica-index"
ATTEMPT_LABEL = f"{API_GROUP}/attempt"
# Kueue's plain-pod integration: a gang is admitted as one pod group.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"

# Container port names: the chart's PodMonitor scrapes the one named METRICS_PORT_NAME.
RENDEZVOUS_PORT_NAME = "rendezvous"
METRICS_PORT_NAME = "metrics"
CONFIG_DIR = "/etc/pretrainjob"
CONFIG_FILE = "job.yaml"
TERMINATION_LOG = "/dev/termination-log"
RUN_DIR = "/tmp/run"
DATA_CACHE_DIR = "/cache/data"  # the node-local block cache the ranks of a pod share (spec.data.cacheMib)
POD_INFO_DIR = "/etc/pretrainjob-pod"  # the downward-API volume: the restart round (spec.failurePolicy.restartInPlace)
RESTART_ROUND_FILE = "restart-round"


SPARE_COMPONENT = "spare"  # app.kubernetes.io/component of spare pods (workers: "worker")
COMPONENT_LABEL = "app.kubernetes.io/component"


def spare_pod_name(job: str, index: int) -> str:
    """Spare pod `index` of `job` (no longer than worker pod `index`'s name, so always a valid name)."""
    return f"{job}-spare-{index}"


def is_spare(pod: dict[str, Any]) -> bool:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL) == SPARE_COMPONENT


def service_name(job: str) -> str:
    return job


def config_map_name(job: str) -> str:
    return f"{job}-config"


def master_addr(job: str, namespace: str) -> str:
    """Worker 0's DNS name under the headless Service (resolvable once its pod has an IP)."""
    return f"{pod_name(job, 0)}.{service_name(job)}.{namespace}.svc"


def selector(job: str) -> dict[str, str]:
    """Labels that select all of a job's worker pods (any attempt)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, JOB_LABEL: job}


def common_labels(job: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "pretrain-worker" if component == "worker" else "pretrainjob",
        "app.kubernetes.io/instance": job,
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: MANAGED_BY,
        JOB_LABEL: job,
    }


def label_selector(labels: dict[str, str]) -> str:
    """The `labelSelector` query value for equality matches."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
