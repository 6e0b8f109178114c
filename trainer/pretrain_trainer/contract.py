"""What the operator and the trainer agree on, in one place: the API's name, the worker pods' names, ports and
environment, the trainer's exit codes, the job phases and the termination record's keys.

Both sides import these names instead of spelling the values again, so a change here reaches both. Standard
library only: the operator imports it, and the operator image has neither torch nor transformers.
"""

from __future__ import annotations

# --- the API ------------------------------------------------------------------------------------------------------

API_GROUP = "pretrain-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{API_GROUP}/{VERSION}"
KIND = "PretrainJob"
PLURAL = "pretrainjobs"

# --- worker pods ---------------------------------------------------------------------------------------------------

WORKER_POD_INFIX = "-worker-"
# Indices a pod name must have room for (the longest is MAX_WORKER_INDEX).
MAX_WORKER_INDEX = 9999
DNS_LABEL_LENGTH = 63  # RFC 1035: pod names are hostnames under the job's headless Service


def pod_name(job: str, index: int) -> str:
    """Worker pod `index` of `job` (also its hostname)."""
    return f"{job}{WORKER_POD_INFIX}{index}"


# Job names this long keep `pod_name(job, MAX_WORKER_INDEX)` a valid DNS label.
MAX_NAME_LENGTH = DNS_LABEL_LENGTH - len(pod_name("", MAX_WORKER_INDEX))

# --- ports ---------------------------------------------------------------------------------------------------------

RENDEZVOUS_PORT = 29500  # torchrun's default, and Kubeflow Trainer v2's
METRICS_PORT = 9400  # rank 0's Prometheus /metrics (spec.metrics.port's default)

# --- environment of a data-preparation pod ---------------------------------------------------------------------------

# Kubernetes sets it in every pod of an Indexed Job; `pretrainjob prepare --tasks N` takes its task index from it.
JOB_COMPLETION_INDEX = "JOB_COMPLETION_INDEX"

# --- environment of a worker pod -----------------------------------------------------------------------------------

# torchrun's arguments as variables, the names Kubeflow's PyTorchJob uses; `pretrainjob worker` reads them. (No
# PET_MAX_RESTARTS: the launcher never restarts a process; the operator restarts the whole gang.)
PET_NNODES = "PET_NNODES"
PET_NPROC_PER_NODE = "PET_NPROC_PER_NODE"
PET_NODE_RANK = "PET_NODE_RANK"
PET_MASTER_ADDR = "PET_MASTER_ADDR"
PET_MASTER_PORT = "PET_MASTER_PORT"
PET_RDZV_ID = "PET_RDZV_ID"
# torchrun's rendezvous host and port of each process (the pods carry them too, for scripts written for Kubeflow).
MASTER_ADDR = "MASTER_ADDR"
MASTER_PORT = "MASTER_PORT"
# The trainer's own.
PRETRAIN_RUN_DIR = "PRETRAIN_RUN_DIR"  # local folder for logs and the summary
PRETRAIN_TERMINATION_LOG = "PRETRAIN_TERMINATION_LOG"  # where global rank 0 leaves its termination record
PRETRAIN_LOG_LEVEL = "PRETRAIN_LOG_LEVEL"
# The PretrainJob's metadata.uid: the identity in the checkpoint URI's lease, the same across gang restarts.
PRETRAIN_JOB_UID = "PRETRAIN_JOB_UID"
# The address rank 0's /metrics listens on: the pod's IP in a pod (where the PodMonitor and the operator scrape);
# unset (a local run) it is loopback, so a laptop or a shared node does not publish its training metrics.
PRETRAIN_METRICS_ADDR = "PRETRAIN_METRICS_ADDR"
METRICS_LOCAL_ADDR = "127.0.0.1"
# The HMAC key checkpoint manifests are signed with (from spec.checkpoint.signingSecret's Secret).
PRETRAIN_CHECKPOINT_SIGNING_KEY = "PRETRAIN_CHECKPOINT_SIGNING_KEY"
# S3 credentials (from spec.storage.credentialsSecret's Secret, under these names as its keys too).
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"
# Variables whose values are secrets: log output replaces them wherever they appear.
SECRET_VARIABLES = (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, PRETRAIN_CHECKPOINT_SIGNING_KEY)
# The node-local block cache the ranks of a pod share (the operator mounts it, sized by spec.data.cacheMib).
PRETRAIN_DATA_CACHE_DIR = "PRETRAIN_DATA_CACHE_DIR"

# --- in-place restarts (spec.failurePolicy.restartInPlace) ------------------------------------------------------------

# A worker pod's restart round: the operator raises it on every pod of the gang to restart the trainer processes in
# the pods they run in (a trainer failed, the pods and nodes are healthy). A downward-API volume shows it to the
# worker as a file, whose path the pod's PRETRAIN_RESTART_ROUND_FILE holds; unset, a worker exits on a failure.
RESTART_ROUND_ANNOTATION = f"{API_GROUP}/restart-round"
PRETRAIN_RESTART_ROUND_FILE = "PRETRAIN_RESTART_ROUND_FILE"
# In the worker's PRETRAIN_RUN_DIR while its trainer processes run for the round asked (the pod's readiness probe
# reads it): its absence in a running pod of a round that was ready tells the operator the trainers failed.
TRAINERS_RUNNING_FILE = "trainers-running"

# --- exit codes of a trainer process (and of `pretrainjob worker`, which passes them on) --------------------------

EXIT_OK = 0
EXIT_BAD_CONFIG = 2  # bad config or data: a restart cannot help, the operator marks the job Failed
EXIT_PREEMPTED = 143  # 128 + SIGTERM: stopped after writing a checkpoint; resume, do not count as a failure
# Retryable failures with a known cause (the operator restarts the gang, as for any other failure, and the record's
# ERROR names the cause in the job's status). 75 is sysexits' EX_TEMPFAIL, "try again later".
EXIT_STORAGE_UNAVAILABLE = 75  # the object store stayed unavailable through spec.storage.retryTimeoutSeconds
EXIT_STALLED = 76  # no training progress for spec.training.stallTimeoutSeconds (the rank watchdog)

# --- job phases (status.phase; the Running, Restarting, Suspended, Succeeded and Failed conditions too) -----------

PENDING = "Pending"
RUNNING = "Running"
RESTARTING = "Restarting"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
PHASES = (PENDING, RUNNING, RESTARTING, SUSPENDED, SUCCEEDED, FAILED)
FINISHED_PHASES = (SUCCEEDED, FAILED)

# --- the termination record ----------------------------------------------------------------------------------------

# Rank 0 leaves a one-line JSON object in its pod's termination message; the operator copies the progress keys into
# the job's status under the same names (scrapes of rank 0's /metrics give the same keys).
STEP = "step"
LOSS = "loss"
TOKENS_SEEN = "tokensSeen"
TOKENS_PER_SECOND = "tokensPerSecond"
LAST_CHECKPOINT = "lastCheckpoint"  # its step
LAST_CHECKPOINT_TIME = "lastCheckpointTime"  # from /metrics only
PREEMPTED = "preempted"  # in the record only: the exit code says it too
PROBE_ACCURACY = "probeAccuracy"  # {task: accuracy} of the last downstream probe (spec.evaluation.probes)
PROBE_STEP = "probeStep"  # the step it probed
ERROR = "error"  # a failed worker's record: why it stopped, e.g. "object store unavailable: s3://…"
PROGRESS_KEYS = (
    STEP,
    TOKENS_SEEN,
    LOSS,
    TOKENS_PER_SECOND,
    LAST_CHECKPOINT,
    LAST_CHECKPOINT_TIME,
    PROBE_ACCURACY,
    PROBE_STEP,
)
