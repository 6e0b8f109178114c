"""The spec's `workers` section: the worker pods (how many, elastic bounds, resources, placement, hardening).
Part of the one typed schema in `config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pretrain_trainer.contract import MAX_WORKER_INDEX
from pretrain_trainer.spec_schema import spec_field


@dataclass(frozen=True)
class WorkersSpec:
    replicas: int = spec_field(
        1,
        doc="Worker pods (nodes). Changing it restarts the workers with the new world "
        "size; the loader resumes at the exact next sample.",
        minimum=1,
        maximum=MAX_WORKER_INDEX + 1,
    )
    min_replicas: int = spec_field(
        0,
        doc="The fewest worker pods the job may train on (elastic training; replicas is then the most). When workers "
        "cannot be scheduled for scaleDownAfterSeconds, or are preempted, the gang restarts on the largest number of "
        "pods it can get, no fewer than this, and grows back towards replicas when capacity returns; the global batch "
        "stays the same (gradient accumulation absorbs the change) and the loader resumes at the exact next sample. "
        "0 (the default) means replicas: not elastic.",
        minimum=0,
        maximum=MAX_WORKER_INDEX + 1,
    )
    scale_down_after_seconds: int = spec_field(
        120,
        doc="Elastic jobs (minReplicas < replicas): how long a worker pod may stay unschedulable before the gang "
        "restarts on the pods that were scheduled.",
        minimum=0,
    )
    scale_up_cooldown_seconds: int = spec_field(
        600,
        doc="Elastic jobs: seconds after a resize before the operator looks for capacity to grow again (it then "
        "holds a spare pod per missing worker and grows once the scheduler places them), so that capacity that "
        "comes and goes does not restart the job over and over.",
        minimum=0,
    )
    procs_per_worker: int = spec_field(1, doc="Processes per pod (torchrun --nproc-per-node): GPUs per pod.", minimum=1)
    resources: dict[str, Any] = spec_field(
        factory=dict,
        doc="Kubernetes resource requests/limits of the trainer container, e.g. {limits: {nvidia.com/gpu: 8}}.",
    )
    node_selector: dict[str, str] = spec_field(factory=dict, doc="Pod nodeSelector.")
    tolerations: list[dict[str, Any]] = spec_field(factory=list, doc="Pod tolerations.")
    affinity: dict[str, Any] = spec_field(factory=dict, doc="Pod affinity.")
    priority_class_name: str = spec_field("", doc="Pod priorityClassName.")
    service_account_name: str = spec_field("", doc="Pod serviceAccountName (e.g. for IRSA access to S3).")
    image_pull_secrets: list[str] = spec_field(factory=list, doc="Names of image pull Secrets.")
    shm_size: str = spec_field("8Gi", doc="Size limit of the memory-backed /dev/shm (data loaders, NCCL).")
    termination_grace_seconds: int = spec_field(
        300,
        doc="Seconds a worker gets after SIGTERM (suspend, preemption, deletion) to write a checkpoint and exit.",
        minimum=0,
    )
    labels: dict[str, str] = spec_field(factory=dict, doc="Extra labels for the worker pods.")
    annotations: dict[str, str] = spec_field(factory=dict, doc="Extra annotations for the worker pods.")
    automount_service_account_token: bool = spec_field(
        False,
        doc="Mount the ServiceAccount's API token into the pods: only for IRSA / workload identity setups that need "
        "it, and only where the operator's policy allows it. The trainer never calls the Kubernetes API.",
    )
    run_as_user: int = spec_field(
        1000,
        doc="The non-root user id (and group) the trainer runs as; the trainer image's user is 1000. Root (0) is "
        "never allowed.",
        minimum=1,
        maximum=2**31 - 1,
    )
    read_only_root_filesystem: bool = spec_field(
        True,
        doc="Keep the container's root filesystem read-only (the trainer writes only to emptyDirs under /tmp and "
        "/dev/shm). false is for images that write elsewhere, where the operator's policy allows it.",
    )

    @property
    def world_size(self) -> int:
        """Trainer processes at the most workers (replicas)."""
        return self.replicas * self.procs_per_worker

    @property
    def min_size(self) -> int:
        """The fewest worker pods the job trains on: minReplicas, or replicas when it is 0 (not elastic)."""
        return self.min_replicas or self.replicas

    @property
    def elastic(self) -> bool:
        return self.min_size < self.replicas

    def sizes(self) -> range:
        """Every number of worker pods the job may train on, fewest first."""
        return range(min(self.min_size, self.replicas), self.replicas + 1)
