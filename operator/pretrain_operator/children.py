"""Pure builders of a PretrainJob's child objects: the headless Service, the ConfigMap and the worker Pods.

Each takes the job's identity and its checked spec and returns a manifest (a dict), owned by the job, so the
garbage collector removes children with their job. The pods follow the worker contract (`pretrain_trainer.contract`
and the README's "Worker pods"): torchrun's launcher as `pretrainjob worker`, with the variables torchrun reads
(PET_*) and Kubeflow's MASTER_ADDR and MASTER_PORT, stable hostnames under the Service, a memory-backed /dev/shm,
and S3 credentials as references to a Secret only. Each process's RANK and WORLD_SIZE are set once, by the
launcher: a pod is a node, not a process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from pretrain_trainer import contract as c
from pretrain_trainer import safe_yaml
from pretrain_trainer.config import PretrainJobSpec, to_dict
from pretrain_trainer.contract import API_VERSION, KIND

from . import hardening, naming


@dataclass(frozen=True)
class JobRef:
    """Who owns the children: the PretrainJob's identity."""

    name: str
    namespace: str
    uid: str
    labels: dict[str, str]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> JobRef:
        meta = body["metadata"]
        return cls(meta["name"], meta.get("namespace", "default"), meta.get("uid", ""), dict(meta.get("labels") or {}))

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, component: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": naming.common_labels(self.name, component),
            "ownerReferences": [self.owner_reference()],
        }


def build_service(job: JobRef) -> dict[str, Any]:
    """Headless Service giving each worker pod a DNS name; published before readiness so that rendezvous can
    resolve worker 0 as soon as it has an IP."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": job.metadata(naming.service_name(job.name), "rendezvous"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": naming.selector(job.name),
            "ports": [
                {"name": naming.RENDEZVOUS_PORT_NAME, "port": c.RENDEZVOUS_PORT, "targetPort": c.RENDEZVOUS_PORT}
            ],
        },
    }


def trainer_config(job: JobRef, spec: PretrainJobSpec) -> str:
    """The job.yaml the trainer reads: the whole accepted spec with every default spelled out."""
    manifest = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": job.name, "namespace": job.namespace},
        "spec": to_dict(spec),
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def build_config_map(job: JobRef, spec: PretrainJobSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": job.metadata(naming.config_map_name(job.name), "config"),
        "data": {naming.CONFIG_FILE: trainer_config(job, spec)},
    }


def accepted_spec_of(config_map: dict[str, Any]) -> dict[str, Any] | None:
    """The spec (YAML shape) a ConfigMap built by build_config_map holds; None when it holds none that can be
    read (edited by hand: the job's spec is then admitted afresh and the ConfigMap rewritten)."""
    try:
        spec = safe_yaml.load((config_map.get("data") or {})[naming.CONFIG_FILE])["spec"]
    except (KeyError, TypeError, yaml.YAMLError):
        return None
    return spec if isinstance(spec, dict) else None


def _env(job: JobRef, spec: PretrainJobSpec, index: int, attempt: int, nnodes: int) -> list[dict[str, Any]]:
    workers = spec.workers
    addr = naming.master_addr(job.name, job.namespace)
    plain = {
        # torchrun reads its arguments from PET_* (static rendezvous on worker 0), as in Kubeflow's PyTorchJob. The
        # gang's size, which an elastic job's gang may have below workers.replicas: the world is nnodes × nproc.
        c.PET_NNODES: nnodes,
        c.PET_NPROC_PER_NODE: workers.procs_per_worker,
        c.PET_NODE_RANK: index,
        c.PET_MASTER_ADDR: addr,
        c.PET_MASTER_PORT: c.RENDEZVOUS_PORT,
        c.PET_RDZV_ID: f"{job.uid or job.name}-{attempt}",
        # What scripts written for Kubeflow read (the launcher sets the same values for its processes, with
        # their RANK and WORLD_SIZE).
        c.MASTER_ADDR: addr,
        c.MASTER_PORT: c.RENDEZVOUS_PORT,
        "PYTHONUNBUFFERED": 1,
        c.PRETRAIN_RUN_DIR: naming.RUN_DIR,
        c.PRETRAIN_TERMINATION_LOG: naming.TERMINATION_LOG,
        c.PRETRAIN_DATA_CACHE_DIR: naming.DATA_CACHE_DIR,
        c.PRETRAIN_JOB_UID: job.uid or job.name,
    }
    if spec.failure_policy.restart_in_place:
        plain[c.PRETRAIN_RESTART_ROUND_FILE] = f"{naming.POD_INFO_DIR}/{naming.RESTART_ROUND_FILE}"
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in plain.items()]
    env += hardening.cache_env()
    # /metrics listens on the pod IP, where the PodMonitor and the operator scrape (a local run keeps loopback).
    env.append({"name": c.PRETRAIN_METRICS_ADDR, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    if spec.storage.credentials_secret:
        for key in (c.AWS_ACCESS_KEY_ID, c.AWS_SECRET_ACCESS_KEY):
            ref = {"name": spec.storage.credentials_secret, "key": key}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
        # Optional, for temporary credentials.
        ref = {"name": spec.storage.credentials_secret, "key": c.AWS_SESSION_TOKEN, "optional": True}
        env.append({"name": c.AWS_SESSION_TOKEN, "valueFrom": {"secretKeyRef": ref}})
    if spec.checkpoint.signing_secret:
        ref = {"name": spec.checkpoint.signing_secret, "key": c.PRETRAIN_CHECKPOINT_SIGNING_KEY}
        env.append({"name": c.PRETRAIN_CHECKPOINT_SIGNING_KEY, "valueFrom": {"secretKeyRef": ref}})
    return env


def pod_labels(job: JobRef, spec: PretrainJobSpec, index: int, attempt: int) -> dict[str, str]:
    labels = dict(spec.workers.labels)
    labels.update(naming.common_labels(job.name, "worker"))
    labels[naming.INDEX_LABEL] = str(index)
    labels[naming.ATTEMPT_LABEL] = str(attempt)
    queue = job.labels.get(naming.KUEUE_QUEUE_LABEL)
    if queue:
        labels[naming.KUEUE_QUEUE_LABEL] = queue
        labels[naming.KUEUE_GROUP_LABEL] = f"{job.name}-{attempt}"
    return labels


def build_pod(
    job: JobRef, spec: PretrainJobSpec, index: int, attempt: int, image: str, nnodes: int | None = None
) -> dict[str, Any]:
    """Worker pod `index` of gang `attempt`, a gang of `nnodes` pods (default workers.replicas)."""
    workers = spec.workers
    nnodes = workers.replicas if nnodes is None else nnodes
    name = naming.pod_name(job.name, index)
    annotations = dict(workers.annotations)
    if naming.KUEUE_QUEUE_LABEL in job.labels:
        annotations[naming.KUEUE_COUNT_ANNOTATION] = str(nnodes)
    ports = [{"name": naming.RENDEZVOUS_PORT_NAME, "containerPort": c.RENDEZVOUS_PORT}]
    if spec.metrics.port:
        ports.append({"name": naming.METRICS_PORT_NAME, "containerPort": spec.metrics.port})
    container: dict[str, Any] = {
        "name": "trainer",
        "image": spec.image or image,
        "command": ["pretrainjob", "worker", "--config", f"{naming.CONFIG_DIR}/{naming.CONFIG_FILE}"],
        "env": _env(job, spec, index, attempt, nnodes),
        "ports": ports,
        "resources": dict(workers.resources),
        "volumeMounts": [
            {"name": "config", "mountPath": naming.CONFIG_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "data-cache", "mountPath": naming.DATA_CACHE_DIR},
        ],
        "terminationMessagePath": naming.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": hardening.container_security_context(workers),
    }
    pod_spec: dict[str, Any] = {
        "hostname": name,
        "subdomain": naming.service_name(job.name),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": workers.termination_grace_seconds,
        "enableServiceLinks": False,
        "automountServiceAccountToken": workers.automount_service_account_token,
        "securityContext": hardening.pod_security_context(workers),
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map_name(job.name)}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": workers.shm_size}},
            {"name": "tmp", "emptyDir": {}},
            # Blocks of training data, downloaded once per pod and shared by its ranks. A little headroom over
            # the bound, which the cache enforces itself: the kubelet evicts a pod whose emptyDir overflows.
            {"name": "data-cache", "emptyDir": {"medium": "Memory", "sizeLimit": f"{spec.data.cache_mib + 64}Mi"}},
        ],
    }
    optional = {
        "nodeSelector": dict(workers.node_selector),
        "tolerations": list(workers.tolerations),
        "affinity": dict(workers.affinity),
        "priorityClassName": workers.priority_class_name,
        "serviceAccountName": workers.service_account_name,
        "imagePullSecrets": [{"name": s} for s in workers.image_pull_secrets],
    }
    pod_spec.update({k: v for k, v in optional.items() if v})
    if spec.failure_policy.restart_in_place:
        _restart_in_place(container, pod_spec, annotations)
    meta = job.metadata(name, "worker")
    meta["labels"] = pod_labels(job, spec, index, attempt)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}


def _restart_in_place(container: dict[str, Any], pod_spec: dict[str, Any], annotations: dict[str, str]) -> None:
    """What in-place restarts need (spec.failurePolicy.restartInPlace): the restart round as an annotation the
    operator raises and a downward-API file the worker watches, and a readiness probe that fails while the pod's
    trainer processes do not run for the round asked (they failed: the worker waits for the next round)."""
    annotations[c.RESTART_ROUND_ANNOTATION] = "0"
    item = {
        "path": naming.RESTART_ROUND_FILE,
        "fieldRef": {"fieldPath": f"metadata.annotations['{c.RESTART_ROUND_ANNOTATION}']"},
    }
    pod_spec["volumes"].append({"name": "pod-info", "downwardAPI": {"items": [item]}})
    container["volumeMounts"].append({"name": "pod-info", "mountPath": naming.POD_INFO_DIR, "readOnly": True})
    container["readinessProbe"] = {
        "exec": {"command": ["cat", f"{naming.RUN_DIR}/{c.TRAINERS_RUNNING_FILE}"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }


def build_pods(
    job: JobRef, spec: PretrainJobSpec, attempt: int, image: str, nnodes: int | None = None
) -> list[dict[str, Any]]:
    """The gang of attempt `attempt`: `nnodes` worker pods (default workers.replicas)."""
    nnodes = spec.workers.replicas if nnodes is None else nnodes
    return [build_pod(job, spec, i, attempt, image, nnodes) for i in range(nnodes)]


def build_spare_pod(job: JobRef, spec: PretrainJobSpec, index: int, attempt: int, image: str) -> dict[str, Any]:
    """A place held for worker `index` of an elastic job that runs below workers.replicas: scheduled like a worker
    (its resources, node selector, tolerations, affinity, priority and labels) but running only a sleep, so that
    the scheduler placing it says there is room for one more worker (and the node pulls the image meanwhile). It
    is deleted at once (no grace period) when the gang grows or no longer waits for capacity."""
    worker = build_pod(job, spec, index, attempt, image)
    meta, pod_spec = worker["metadata"], worker["spec"]
    meta["name"] = naming.spare_pod_name(job.name, index)
    meta["labels"] = {
        **spec.workers.labels,
        **naming.common_labels(job.name, naming.SPARE_COMPONENT),
        naming.INDEX_LABEL: str(index),
        naming.ATTEMPT_LABEL: str(attempt),
    }
    meta.pop("annotations", None)
    keep = ("image", "resources", "securityContext")
    container = {
        "name": "spare",
        "command": ["sleep", "infinity"],
        **{k: worker["spec"]["containers"][0][k] for k in keep},
    }
    pod_spec.update(containers=[container], volumes=[], terminationGracePeriodSeconds=0)
    for key in ("hostname", "subdomain"):
        pod_spec.pop(key, None)
    return worker
