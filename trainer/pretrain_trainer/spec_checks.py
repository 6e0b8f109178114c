"""The checks of a PretrainJob spec across fields, beyond each field's type and range: URIs, model and objective,
masking, batch divisibility, GPUs per pod. `config.parse_spec` runs them once the fields parse."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any
from urllib.parse import urlsplit

from pretrain_trainer.config import ARCHITECTURES, PretrainJobSpec, uri_problem
from pretrain_trainer.contract import METRICS_PORT, RENDEZVOUS_PORT
from pretrain_trainer.pod_checks import image_problem, pod_problems
from pretrain_trainer.spec_objectives import PROBE_TASKS, SENTENCE_ARCHITECTURES, MlmSpec
from pretrain_trainer.spec_schema import Problem, yaml_name


def semantic_problems(spec: PretrainJobSpec, path: str = "spec") -> list[Problem]:
    """Checks across fields, beyond types and ranges."""
    out: list[Problem] = []
    out += _uri_problems(spec, path)
    out += _model_problems(spec, path)
    mlm_names = {f.name: yaml_name(f) for f in dataclasses.fields(MlmSpec)}
    out += [Problem(f"{path}.objective.mlm", m) for m in spec.objective.mlm.cross_field_problems(mlm_names.__getitem__)]
    out += _batch_problems(spec, path)
    if spec.training.non_finite.action == "rollback" and not spec.checkpoint.uri:
        out.append(
            Problem(f"{path}.training.nonFinite.action", "rollback needs checkpoints to go back to: set checkpoint.uri")
        )
    if spec.checkpoint.resume_from and not spec.checkpoint.uri:
        out.append(Problem(f"{path}.checkpoint.resumeFrom", "needs checkpoint.uri, the checkpoints to resume from"))
    out += _runtime_problems(spec, path)
    out += _probe_problems(spec, path)
    pod = pod_problems(spec.workers, f"{path}.workers")
    out += pod
    if problem := image_problem(spec.image, f"{path}.image"):
        out.append(problem)
    gpus = None if pod else _gpu_count(spec.workers.resources)
    if gpus is not None and gpus != spec.workers.procs_per_worker:
        out.append(
            Problem(
                f"{path}.workers.resources",
                f"asks for {gpus} GPUs per pod but "
                f"workers.procsPerWorker is {spec.workers.procs_per_worker}; they must match",
            )
        )
    return out


def _runtime_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    out = []
    if spec.metrics.port == RENDEZVOUS_PORT:
        out.append(
            Problem(
                f"{path}.metrics.port",
                f"{RENDEZVOUS_PORT} is the workers' rendezvous port (rank 0 could not bind both); use another port, "
                f"e.g. {METRICS_PORT}",
            )
        )
    stall, retry = spec.training.stall_timeout_seconds, spec.storage.retry_timeout_seconds
    if stall <= retry:
        out.append(
            Problem(
                f"{path}.training.stallTimeoutSeconds",
                f"{stall} must exceed storage.retryTimeoutSeconds ({retry}): a rank waiting out a storage outage "
                "is not stalled; raise it or lower storage.retryTimeoutSeconds",
            )
        )
    return out


def _sentence_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    task, field = spec.objective.sentence.task, f"{path}.objective.sentence.task"
    if task == "none":
        return []
    if spec.objective.type != "mlm":
        return [Problem(field, f"{task} is a second loss beside masked LM; set objective.type: mlm or task: none")]
    fits = SENTENCE_ARCHITECTURES[task]
    if spec.model.architecture not in fits:
        return [
            Problem(
                field,
                f"{task} needs model.architecture {' or '.join(fits)} (its *ForPreTraining head), got "
                f"{spec.model.architecture}",
            )
        ]
    if spec.objective.distillation.teacher:
        return [Problem(field, f"{task} does not combine with distillation (the teacher predicts tokens only)")]
    return []


def _probe_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    probes, field = spec.evaluation.probes, f"{path}.evaluation.probes"
    unknown = [t for t in probes.tasks if t not in PROBE_TASKS]
    if unknown:
        return [Problem(f"{field}.tasks", f"unknown task {unknown!r}; the tasks are {', '.join(PROBE_TASKS)}")]
    if probes.every_steps and not probes.tasks:
        return [Problem(f"{field}.tasks", "empty, but everySteps asks for probes; name a task or set everySteps: 0")]
    return []


def _uri_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    uris = [
        (spec.tokenizer.uri, "tokenizer.uri"),
        (spec.data.train, "data.train"),
        (spec.data.validation, "data.validation"),
        (spec.checkpoint.uri, "checkpoint.uri"),
        (spec.model.from_, "model.from"),
    ]
    out = [
        p
        for v, where in [*uris, (spec.storage.endpoint, "storage.endpoint")]
        if (p := credentials_problem(v, f"{path}.{where}"))
    ]
    refused = {p.path for p in out}
    return out + [
        p for v, where in uris if f"{path}.{where}" not in refused and (p := uri_problem(v, f"{path}.{where}"))
    ]


# Query parameters of presigned URLs and similar: whoever reads the spec could use them.
_SECRET_QUERY = re.compile(r"(?i)(^|[?&;])[^=&;]*(signature|credential|token|secret|password|passwd|key)[^=&;]*=")


def credentials_problem(value: str, path: str) -> Problem | None:
    """A URI (or endpoint) that carries credentials: `user:password@` or a presigned/secret query parameter.
    The spec is copied into the ConfigMap, every checkpoint manifest and logs, so credentials in it are in the
    clear; the message never repeats them."""
    parts = urlsplit(value) if "://" in value else None
    if parts is None:
        return None
    if "@" in parts.netloc:
        what = "a user name and password (user:password@)"
    elif _SECRET_QUERY.search(parts.query):
        what = "a secret query parameter (a signature, token or key)"
    else:
        return None
    return Problem(
        path,
        f"holds {what}; credentials never go in the spec (it is stored in a ConfigMap and in every checkpoint "
        f"manifest). Remove them and put AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in a Secret named by "
        f"storage.credentialsSecret (or give the pods a workload identity)",
    )


def _model_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    out: list[Problem] = []
    arch = ARCHITECTURES[spec.model.architecture]
    wants = {"clm": "decoder", "span-corruption": "encoder-decoder", "denoising": "encoder-decoder"}.get(
        spec.objective.type, "encoder"
    )
    if spec.objective.type == "electra" and spec.model.architecture != "electra":
        out.append(
            Problem(
                f"{path}.objective.type",
                f"electra trains an ELECTRA generator and discriminator; set model.architecture: electra "
                f"(got {spec.model.architecture})",
            )
        )
    elif arch["kind"] != wants:
        fit = ", ".join(a for a, v in ARCHITECTURES.items() if v["kind"] == wants)
        out.append(
            Problem(
                f"{path}.objective.type",
                f"{spec.objective.type} needs {'a' if wants == 'decoder' else 'an'} {wants} architecture, but "
                f"model.architecture is {spec.model.architecture}; use one of {fit}",
            )
        )
    out += _distillation_problems(spec, path)
    out += _sentence_problems(spec, path)
    if spec.model.init == "pretrained" and not spec.model.from_:
        out.append(Problem(f"{path}.model.from", "required for init: pretrained (the checkpoint to continue from)"))
    if spec.model.init == "scratch" and spec.model.from_:
        out.append(Problem(f"{path}.model.from", "only for init: pretrained; remove it or set init: pretrained"))
    if spec.model.extend_vocab and spec.model.init != "pretrained":
        out.append(Problem(f"{path}.model.extendVocab", "only for init: pretrained"))
    if "positions_key" not in arch:  # no position limit (T5)
        return out
    configured = spec.model.config.get(arch["positions_key"], arch["positions"])
    if not isinstance(configured, int) or isinstance(configured, bool) or configured < 1:
        out.append(
            Problem(f"{path}.model.config.{arch['positions_key']}", f"must be a positive integer, got {configured!r}")
        )
    elif spec.model.init == "scratch":
        positions = configured - arch.get("offset", 0)
        if spec.data.sequence_length > positions:
            out.append(
                Problem(
                    f"{path}.data.sequenceLength",
                    f"{spec.data.sequence_length} exceeds the model's "
                    f"{positions} positions; lower it or set model.config.{arch['positions_key']}",
                )
            )
    return out


def _batch_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    out: list[Problem] = []
    t, w = spec.training, spec.workers
    if w.min_replicas > w.replicas:
        out.append(
            Problem(
                f"{path}.workers.minReplicas",
                f"{w.min_replicas} exceeds workers.replicas {w.replicas} (the most workers); lower minReplicas or "
                "raise replicas",
            )
        )
    if bool(t.global_batch_tokens) == bool(t.global_batch_samples):
        out.append(Problem(f"{path}.training", "give exactly one of globalBatchTokens and globalBatchSamples"))
        return out
    if t.global_batch_tokens and t.global_batch_tokens % spec.data.sequence_length:
        out.append(
            Problem(
                f"{path}.training.globalBatchTokens",
                f"{t.global_batch_tokens} is not a multiple of data.sequenceLength {spec.data.sequence_length}",
            )
        )
    samples = t.batch_samples(spec.data.sequence_length)
    unit = spec.data.sequence_length if t.global_batch_tokens else 1
    which = "globalBatchTokens" if t.global_batch_tokens else "globalBatchSamples"
    per_step = t.micro_batch_size * w.world_size
    if w.min_size < w.replicas and samples:
        out += _elastic_batch_problems(spec, path, samples, unit, which)
    elif samples % per_step or samples == 0:
        lower = max(per_step, samples // per_step * per_step)
        out.append(
            Problem(
                f"{path}.training.{which}",
                f"{samples} samples per step cannot be split into "
                f"micro batches of {t.micro_batch_size} over {w.world_size} processes (world size); use a "
                f"multiple of {per_step} samples, e.g. {lower * unit} or {(lower + per_step) * unit}",
            )
        )
    return out


def _elastic_batch_problems(spec: PretrainJobSpec, path: str, samples: int, unit: int, which: str) -> list[Problem]:
    """An elastic job trains on any number of workers from minReplicas to replicas: the global batch must split
    into micro batches over every one of those world sizes."""
    t, w = spec.training, spec.workers
    sizes = w.sizes()
    bad = [n for n in sizes if samples % (t.micro_batch_size * w.procs_per_worker * n)]
    if not bad:
        return []
    need = 1
    for n in sizes:  # the batch that fits every size, unless it is absurdly large (a wide range of sizes)
        need = math.lcm(need, t.micro_batch_size * w.procs_per_worker * n)
        if need > 10**9:
            break
    shown = ", ".join(map(str, bad[:5])) + (", …" if len(bad) > 5 else "")
    fix = f"use a multiple of {need} samples" + (f" ({need * unit} tokens)" if unit > 1 else "") + ", or "
    fix = fix if need <= 10**9 else ""
    return [
        Problem(
            f"{path}.training.{which}",
            f"{samples} samples per step cannot be split into micro batches of {t.micro_batch_size} on every size "
            f"from workers.minReplicas {w.min_size} to workers.replicas {w.replicas}: not on {shown} workers "
            f"of {w.procs_per_worker} processes each; {fix}narrow workers.minReplicas..replicas to sizes that "
            "divide it",
        )
    ]


def _gpu_count(resources: dict[str, Any]) -> int | None:
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get("nvidia.com/gpu")
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return -1
    return None


def _distillation_problems(spec: PretrainJobSpec, path: str) -> list[Problem]:
    kd, field = spec.objective.distillation, f"{path}.objective.distillation"
    if not kd.teacher:
        return [Problem(f"{field}.teacher", "required by studentInit: teacher")] if kd.student_init == "teacher" else []
    out = []
    if spec.objective.type not in ("clm", "mlm"):
        out.append(Problem(f"{path}.objective.type", f"distillation works on clm or mlm, not {spec.objective.type}"))
    if kd.student_init == "teacher" and spec.model.init == "pretrained":
        out.append(Problem(f"{field}.studentInit", "teacher: the student starts from the teacher, not model.from"))
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in kd.layer_map):
        out.append(Problem(f"{field}.layerMap", f"must be teacher layer indices (integers >= 0), got {kd.layer_map}"))
    elif kd.layer_map and kd.student_init != "teacher":
        out.append(Problem(f"{field}.layerMap", "only for studentInit: teacher"))
    return out
