"""The PretrainJob spec as typed dataclasses: the one schema that the trainer reads, `pretrainjob validate` checks
and the CRD's openAPIV3Schema is generated from. Imports neither torch nor transformers (the operator image has
neither).

Every field carries its documentation and constraints in `spec_field(...)` metadata (see `spec_schema`), so the
same text reaches `--help`, the CRD and the README reference; checks across fields live in `spec_checks`. YAML
uses Kubernetes' camelCase (`microBatchSize`); Python uses snake_case (`micro_batch_size`); `from` is `from_`.

    job = load_job("pretrainjob.yaml")           # a whole PretrainJob manifest, or just its spec
    job.spec.training.micro_batch_size
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pretrain_trainer import safe_yaml
from pretrain_trainer.contract import (
    API_VERSION,
    KIND,
    MAX_NAME_LENGTH,
    METRICS_PORT,
    WORKER_POD_INFIX,
)
from pretrain_trainer.errors import redact_url
from pretrain_trainer.spec_objectives import EvaluationSpec, ObjectiveSpec
from pretrain_trainer.spec_schema import (
    ConfigError,
    Problem,
    constraint_problems,
    field_problems,
    parse_dataclass,
    spec_field,
    to_dict,
    yaml_name,
)
from pretrain_trainer.spec_workers import WorkersSpec

MAX_TTL_SECONDS = 10 * 366 * 24 * 3600  # ten years: beyond any retention, within datetime's range
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1123 label

# What each architecture is (and, for `scratch`, how many positions it has by default).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt2": {"kind": "decoder", "positions_key": "n_positions", "positions": 1024},
    "llama": {"kind": "decoder", "positions_key": "max_position_embeddings", "positions": 2048},
    "bert": {"kind": "encoder", "positions_key": "max_position_embeddings", "positions": 512},
    # RoBERTa reserves two positions for its padding offset.
    "roberta": {"kind": "encoder", "positions_key": "max_position_embeddings", "positions": 514, "offset": 2},
    "electra": {"kind": "encoder", "positions_key": "max_position_embeddings", "positions": 512},
    "albert": {"kind": "encoder", "positions_key": "max_position_embeddings", "positions": 512},
    # Encoder–decoders; `decoder_start`: the special token the decoder starts from (T5: pad, BART: eos). T5's
    # relative position buckets have no length limit.
    "t5": {"kind": "encoder-decoder", "decoder_start": "pad"},
    "bart": {
        "kind": "encoder-decoder",
        "positions_key": "max_position_embeddings",
        "positions": 1024,
        "decoder_start": "eos",
    },
}


# --------------------------------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class ModelSpec:
    architecture: str = spec_field("gpt2", doc="A transformers architecture.", enum=tuple(ARCHITECTURES))
    init: str = spec_field(
        "scratch",
        doc="scratch: new weights from `config`; pretrained: continue "
        "pretraining the Hugging Face checkpoint at `from` (DAPT/TAPT).",
        enum=("scratch", "pretrained"),
    )
    from_: str = spec_field(
        "", name="from", doc="Hugging Face-format checkpoint folder (local path or s3:// URI) for init: pretrained."
    )
    config: dict[str, Any] = spec_field(
        factory=dict,
        doc="Overrides of the architecture's transformers config, "
        "e.g. {hidden_size: 768, num_hidden_layers: 12}. vocab_size comes from "
        "the tokenizer.",
    )
    extend_vocab: bool = spec_field(
        False,
        doc="For init: pretrained, add the job tokenizer's tokens that the "
        "checkpoint's tokenizer lacks and resize the embeddings (old rows kept).",
    )


@dataclass(frozen=True)
class TokenizerSpec:
    uri: str = spec_field(
        doc="tokenizer.json, or a folder holding it (local path or s3:// URI). Shards must "
        "have been prepared with this tokenizer."
    )


@dataclass(frozen=True)
class DataSpec:
    train: str = spec_field(doc="Shard set for training: a folder written by `pretrainjob prepare` (holds index.json).")
    validation: str = spec_field("", doc="Shard set for validation loss and perplexity (optional).")
    sequence_length: int = spec_field(1024, doc="Tokens per sample.", minimum=8)
    seed: int = spec_field(0, doc="Seed of the global sample order.", minimum=0)
    read_threads: int = spec_field(8, doc="Parallel block downloads per rank.", minimum=1)
    block_mib: int = spec_field(
        8,
        doc="Size of one read, in MiB: the stream is cut into blocks of whole samples of about this size; each "
        "block is fetched with one ranged GET per shard it touches into the node's cache.",
        minimum=1,
    )
    shuffle_window_blocks: int = spec_field(
        16,
        doc="Blocks per shuffle window: blocks are permuted every epoch and samples are shuffled within windows "
        "of this many blocks, so a batch mixes samples from this many places in the corpus. The next window is "
        "read ahead while the current one trains.",
        minimum=1,
    )
    cache_mib: int = spec_field(
        1024,
        doc="Bound of the node-local block cache, in MiB, shared by the ranks of a pod (the operator mounts a "
        "memory-backed emptyDir of this size, counted against the pod's memory). Must hold the windows read "
        "ahead: about 3 × blockMib × shuffleWindowBlocks.",
        minimum=1,
    )


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = spec_field("adamw", doc="adamw (fused on CUDA) or lamb.", enum=("adamw", "lamb"))
    lr: float = spec_field(3e-4, doc="Peak learning rate.", minimum=0.0, exclusive_minimum=True)
    weight_decay: float = spec_field(0.1, doc="Decoupled weight decay (not applied to biases and norms).", minimum=0.0)
    beta1: float = spec_field(0.9, doc="First-moment decay.", minimum=0.0, maximum=1.0)
    beta2: float = spec_field(0.95, doc="Second-moment decay.", minimum=0.0, maximum=1.0)
    eps: float = spec_field(1e-8, doc="Denominator epsilon.", minimum=0.0, exclusive_minimum=True)
    warmup_steps: int = spec_field(0, doc="Linear warm-up steps from 0 to lr.", minimum=0)
    schedule: str = spec_field(
        "cosine", doc="Decay after warm-up, to lr × minLrRatio at maxSteps.", enum=("cosine", "linear", "constant")
    )
    min_lr_ratio: float = spec_field(0.1, doc="Final learning rate as a share of lr.", minimum=0.0, maximum=1.0)
    grad_clip: float = spec_field(1.0, doc="Clip the global gradient norm to this (0 disables).", minimum=0.0)


NON_FINITE_ACTIONS = ("stop", "skip", "rollback")


@dataclass(frozen=True)
class NonFiniteSpec:
    """What the trainer does about a step whose loss or gradient norm is NaN or infinite. The check runs on every
    step, on values every rank already holds, and the checkpoint of such a step is never written."""

    action: str = spec_field(
        "stop",
        doc="stop: end the run with an error naming the step, without saving it; skip: drop that global batch (no "
        "optimizer or scheduler step) and go on; rollback: reload the newest checkpoint known to be good and "
        "continue past the offending global batch (needs checkpoint.uri).",
        enum=NON_FINITE_ACTIONS,
    )
    limit: int = spec_field(
        3,
        doc="Batches `skip` may drop, or rollbacks `rollback` may make, in one run before it stops with an error.",
        minimum=1,
    )


@dataclass(frozen=True)
class TrainingSpec:
    max_steps: int = spec_field(1000, doc="Optimizer steps to train for.", minimum=1)
    global_batch_tokens: int = spec_field(
        0,
        doc="Tokens per optimizer step over all ranks (sets the global "
        "batch as tokens ÷ sequenceLength). Give this or globalBatchSamples.",
        minimum=0,
    )
    global_batch_samples: int = spec_field(0, doc="Samples per optimizer step over all ranks.", minimum=0)
    micro_batch_size: int = spec_field(
        8,
        doc="Samples per forward pass per process; gradient accumulation makes up the rest of the global batch.",
        minimum=1,
    )
    precision: str = spec_field(
        "auto", doc="auto: bf16 autocast on GPU, fp32 on CPU; bf16; fp32.", enum=("auto", "bf16", "fp32")
    )
    parallelism: str = spec_field(
        "ddp", doc="ddp: replicate the model; fsdp: shard it (FSDP2 fully_shard).", enum=("ddp", "fsdp")
    )
    compile: bool = spec_field(False, doc="torch.compile the model.")
    activation_checkpointing: bool = spec_field(False, doc="Recompute activations in the backward pass to save memory.")
    log_every_steps: int = spec_field(10, doc="Steps between log lines.", minimum=1)
    eval_every_steps: int = spec_field(
        0, doc="Steps between validation runs (0: only at the end, when data.validation is set).", minimum=0
    )
    eval_batches: int = spec_field(20, doc="Global batches per validation run.", minimum=1)
    seed: int = spec_field(0, doc="Seed for model initialisation and masking.", minimum=0)
    stall_timeout_seconds: int = spec_field(
        600,
        doc="A rank that makes no progress (no finished step, checkpoint or validation run) for this long is "
        "stalled: its watchdog logs which rank, host and step, and the worker exits with a retryable code so that "
        "the gang restarts from the newest checkpoint. Collectives time out at twice this. Must exceed "
        "storage.retryTimeoutSeconds and the longest checkpoint save.",
        minimum=1,
    )
    non_finite: NonFiniteSpec = spec_field(
        factory=NonFiniteSpec, doc="What to do when a step's loss or gradient norm is NaN or infinite."
    )

    def batch_samples(self, sequence_length: int) -> int:
        return self.global_batch_samples or self.global_batch_tokens // sequence_length


@dataclass(frozen=True)
class CheckpointSpec:
    uri: str = spec_field("", doc="Where checkpoints go (s3:// URI or local path). Empty: no checkpoints, no resume.")
    every_steps: int = spec_field(1000, doc="Steps between checkpoints (one is also written at the end).", minimum=1)
    keep: int = spec_field(
        3, doc="Complete checkpoints to keep; pruning never drops the newest ones known to be good.", minimum=1
    )
    resume_from: int = spec_field(
        0,
        doc="Resume from the checkpoint of this step (0: the newest one that verifies). Checkpoints newer than it "
        "from before this choice are set aside (renamed step-N.superseded-<time>/), never deleted.",
        minimum=0,
    )
    export_hf: bool = spec_field(
        False,
        name="exportHF",
        doc="Also export the final model in Hugging Face save_pretrained format, with the tokenizer, under <uri>/hf/.",
    )
    async_: bool = spec_field(
        True,
        doc="Save in the background: training waits only while the state is copied to host memory (pinned on "
        "GPUs; one extra copy of each rank's state in RAM), the upload overlaps the next steps, and a checkpoint "
        "counts only once every rank's files are uploaded and its manifest written, so a crash mid-save leaves "
        "nothing resume would pick. false: training waits for the whole save.",
    )
    signing_secret: str = spec_field(
        "",
        doc="Name of a Secret whose key PRETRAIN_CHECKPOINT_SIGNING_KEY (16+ random bytes) signs every checkpoint "
        "manifest (HMAC-SHA256); resume then refuses a checkpoint that is unsigned or was changed, before reading it.",
    )


@dataclass(frozen=True)
class StorageSpec:
    endpoint: str = spec_field("", doc="S3 endpoint URL for S3-compatible stores (MinIO, Ceph); empty: AWS.")
    region: str = spec_field("", doc="S3 region.")
    addressing_style: str = spec_field(
        "auto", doc="auto: path-style when an endpoint is set.", enum=("auto", "path", "virtual")
    )
    credentials_secret: str = spec_field(
        "",
        doc="Name of a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, passed to the pods as references only.",
    )
    retry_timeout_seconds: int = spec_field(
        300,
        doc="How long a storage request is retried through transient faults (outage, throttling, a restarting "
        "endpoint), with jittered exponential backoff, before the worker exits with a retryable code and the "
        "operator restarts the gang (status: object store unavailable). 0: no retries.",
        minimum=0,
    )


@dataclass(frozen=True)
class MetricsSpec:
    port: int = spec_field(
        METRICS_PORT, doc="Port of rank 0's Prometheus /metrics endpoint (0 disables).", minimum=0, maximum=65535
    )


@dataclass(frozen=True)
class FailurePolicySpec:
    max_restarts: int = spec_field(3, doc="Gang restarts after a worker failure before the job is Failed.", minimum=0)
    max_preemptions: int = spec_field(
        -1,
        doc="Gang restarts after preemptions (a worker stopped by SIGTERM after its checkpoint, exit 143; an "
        "eviction; a DisruptionTarget condition) before the job is Failed; they do not count as failures. "
        "-1: unlimited.",
        minimum=-1,
    )
    restart_in_place: bool = spec_field(
        True,
        doc="After a trainer process fails while every worker pod runs on a Ready node, restart the trainer "
        "processes inside the pods they run in (a new rendezvous round, resuming from the newest checkpoint) "
        "instead of recreating the gang; a lost, evicted or failed pod or a node that is not Ready still gets a "
        "new gang. Both count against maxRestarts.",
    )


@dataclass(frozen=True)
class PretrainJobSpec:
    tokenizer: TokenizerSpec = spec_field(doc="The job's tokenizer.")
    data: DataSpec = spec_field(doc="Training and validation shards.")
    image: str = spec_field("", doc="Trainer container image (the operator's default when empty).")
    suspend: bool = spec_field(
        False,
        doc="Stop the workers (after a checkpoint) and keep the job; false "
        "resumes. Kueue and admins use it to pause jobs.",
    )
    workers: WorkersSpec = spec_field(factory=WorkersSpec, doc="Worker pods and processes.")
    model: ModelSpec = spec_field(factory=ModelSpec, doc="Architecture and initialisation.")
    objective: ObjectiveSpec = spec_field(factory=ObjectiveSpec, doc="Training objective.")
    optimizer: OptimizerSpec = spec_field(factory=OptimizerSpec, doc="Optimizer and learning-rate schedule.")
    training: TrainingSpec = spec_field(factory=TrainingSpec, doc="Batching, precision, parallelism, steps.")
    evaluation: EvaluationSpec = spec_field(factory=EvaluationSpec, doc="Downstream evaluation during training.")
    checkpoint: CheckpointSpec = spec_field(factory=CheckpointSpec, doc="Checkpoints in object storage.")
    storage: StorageSpec = spec_field(factory=StorageSpec, doc="Object-store connection.")
    metrics: MetricsSpec = spec_field(factory=MetricsSpec, doc="Prometheus metrics.")
    failure_policy: FailurePolicySpec = spec_field(factory=FailurePolicySpec, doc="Restarts on failure.")
    clean_pod_policy: str = spec_field(
        "Running",
        doc="Which worker pods to delete when the job finishes: Running (those still running; finished pods stay "
        "for their logs), All, or None.",
        enum=("Running", "All", "None"),
    )
    ttl_seconds_after_finished: int = spec_field(
        0, doc="Delete the finished job after this many seconds (0: keep it).", minimum=0, maximum=MAX_TTL_SECONDS
    )
    active_deadline_seconds: int = spec_field(
        0,
        doc="Fail the job (reason DeadlineExceeded, workers stopped) once it has been active this many seconds, "
        "restarts and backoffs included, counted from its start or its last resume from suspension, as for batch "
        "Jobs. 0: no deadline.",
        minimum=0,
        maximum=MAX_TTL_SECONDS,
    )


@dataclass(frozen=True)
class Job:
    name: str
    namespace: str
    spec: PretrainJobSpec


def parse_spec(data: Any, path: str = "spec") -> PretrainJobSpec:
    """Build and check a spec from parsed YAML; raises ConfigError listing every problem found."""
    problems: list[Problem] = []
    spec = parse_dataclass(PretrainJobSpec, data, path, problems)
    if spec is not None and not problems:
        # Imported here: the checks module reads this module's classes.
        from pretrain_trainer.spec_checks import semantic_problems

        problems.extend(semantic_problems(spec, path))
    if problems:
        raise ConfigError(problems)
    return spec


def parse_job(data: Any, default_name: str = "local") -> Job:
    """A whole PretrainJob manifest, or a bare spec."""
    if not isinstance(data, dict):
        raise ConfigError([Problem("(document)", "must be a PretrainJob manifest or its spec, as a mapping")])
    if "spec" not in data and "kind" not in data:
        return Job(default_name, "default", parse_spec(data, "spec"))
    problems = []
    if data.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}, got {data.get('kind')!r}"))
    if data.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}, got {data.get('apiVersion')!r}"))
    name, namespace = _identity(data.get("metadata") or {}, problems)
    try:
        spec = parse_spec(data.get("spec"), "spec")
    except ConfigError as err:
        problems.extend(err.problems)
    if problems:
        raise ConfigError(problems)
    return Job(name, namespace, spec)


def _identity(meta: Any, problems: list[Problem]) -> tuple[str, str]:
    """The (name, namespace) of a manifest's metadata; what is wrong with them goes to `problems`."""
    if not isinstance(meta, dict):
        problems.append(Problem("metadata", f"must be a mapping, got {type(meta).__name__}"))
        return "", ""
    name, namespace = meta.get("name", ""), meta.get("namespace", "default")
    if not isinstance(name, str):
        problems.append(Problem("metadata.name", f"must be a string, got {name!r}"))
    else:
        problems.extend(name_problems(name))
    if not isinstance(namespace, str) or not NAMESPACE_RE.match(namespace):
        problems.append(Problem("metadata.namespace", f"{namespace!r} is not a namespace name (RFC 1123 label)"))
    return name, namespace


def load_jobs(path: str | Path) -> list[Job]:
    """Every PretrainJob in a YAML file (multi-document files may hold other kinds too, which are skipped; a
    file with a single bare spec is one job). Errors name the file, the document and the field paths."""
    try:
        docs = [d for d in safe_yaml.load_all(safe_yaml.read_text(Path(path).read_bytes(), str(path))) if d is not None]
    except yaml.YAMLError as err:
        raise ConfigError([Problem("(document)", f"not valid YAML: {err}")], str(path)) from None
    if len(docs) > 1:
        docs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if not docs:
        raise ConfigError([Problem("(document)", f"no {KIND} in this file")], str(path))
    jobs, problems = [], []
    for n, doc in enumerate(docs):
        try:
            jobs.append(parse_job(doc, default_name=Path(path).stem.lower().replace("_", "-")))
        except ConfigError as err:
            where = f"{path} (document {n + 1})" if len(docs) > 1 else str(path)
            problems.extend(Problem(f"{where}: {p.path}", p.message) for p in err.problems)
    if problems:
        raise ConfigError(problems)
    return jobs


def load_job(path: str | Path) -> Job:
    """Read and check a file holding one PretrainJob (or a bare spec)."""
    jobs = load_jobs(path)
    if len(jobs) != 1:
        raise ConfigError([Problem("(document)", f"holds {len(jobs)} {KIND}s; the trainer takes one")], str(path))
    return jobs[0]


# ----------------------------------------------------------------------------------------- semantic checks


def name_problems(name: str) -> list[Problem]:
    if not name:
        return [Problem("metadata.name", "required")]
    if len(name) > MAX_NAME_LENGTH:
        return [
            Problem(
                "metadata.name",
                f"{len(name)} characters; at most {MAX_NAME_LENGTH}, so that "
                f"'{name[:8]}…{WORKER_POD_INFIX}N' stays a valid 63-character DNS label",
            )
        ]
    if not NAME_RE.match(name):
        return [
            Problem(
                "metadata.name",
                f"{name!r} must be lower-case letters, digits and '-', starting with "
                "a letter and ending with a letter or digit (RFC 1035)",
            )
        ]
    return []


_URI_RE = re.compile(r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?|file:///.*)$")


def uri_problem(value: str, path: str) -> Problem | None:
    """Object-store URIs must be s3:// (with a valid bucket name) or file:///; plain paths are local."""
    if value and ":" in value.split("/", 1)[0] and not _URI_RE.match(value):
        return Problem(
            path,
            f"{redact_url(value)!r} is not a valid URI; use s3://bucket/prefix (bucket: 3-63 lower-case "
            "letters, digits, '.' and '-'), file:///path or a local path",
        )
    return None


# The schema machinery is re-exported: callers read the spec and its errors from one module.
__all__ = [
    "ConfigError",
    "Job",
    "PretrainJobSpec",
    "Problem",
    "constraint_problems",
    "field_problems",
    "load_job",
    "parse_job",
    "parse_spec",
    "spec_field",
    "to_dict",
    "yaml_name",
]
