"""Knowledge distillation (Sanh et al., 2019, DistilBERT; Turc et al., 2019, "Well-Read Students Learn Better") on
top of causal or masked LM: a frozen teacher's softened predictions guide the student.

    loss = αkd · T² · KL(teacher_T ‖ student_T) + αtask · (the MLM or CLM loss) + αcos · (1 − cos(h_s, h_t))

The KL term is DistilBERT's (`KLDivLoss(log_softmax(s/T), softmax(t/T))`), over the positions that carry a label
(the masked ones for MLM, all for CLM), as a mean per labelled token; the cosine term compares the last hidden
states at every token and is used only when the widths match. The teacher is loaded from a Hugging Face folder,
put in eval mode with gradients off (bf16 on a GPU) and held by the objective, not by the trained module: it is
never checkpointed, never wrapped by DDP/FSDP and never updated. The student is built from `model` or, with
`studentInit: teacher`, is the teacher's architecture with the layers of `layerMap` (default every other layer)
and the teacher's embeddings, copied.
"""

from __future__ import annotations

import copy
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from pretrain_trainer.model import ModelInfo, download_folder, model_info
from pretrain_trainer.objectives.base import ForwardOutput, Objective

if TYPE_CHECKING:
    from pretrain_trainer.checkpoint import CheckpointManager
    from pretrain_trainer.spec_objectives import DistillationSpec
    from pretrain_trainer.storage import StorageOptions

log = logging.getLogger(__name__)


TEACHER_FIELD = "spec.objective.distillation.teacher"


def vocabulary_mismatch(theirs: Tokenizer | None, job: Tokenizer, teacher_uri: str, job_uri: str) -> str | None:
    """Why the teacher cannot be distilled with the job's tokenizer (its tokenizer.json has another vocabulary, or
    there is none), naming both vocabularies; None when they are the same."""
    job_vocab = job.get_vocab(with_added_tokens=True)
    their_vocab = theirs.get_vocab(with_added_tokens=True) if theirs is not None else None
    if their_vocab == job_vocab:
        return None
    what = f"{len(their_vocab)} tokens" if their_vocab is not None else "no tokenizer.json"
    return (
        f"the teacher's vocabulary ({teacher_uri}: {what}) differs from the job's (spec.tokenizer.uri {job_uri}: "
        f"{len(job_vocab)} tokens); teacher and student must share the tokenizer"
    )


def check_vocabulary(teacher_tokenizer: Tokenizer | None, job: Tokenizer, teacher_uri: str, job_uri: str) -> None:
    """Teacher and student must read the same ids: the teacher's tokenizer.json must be the job's."""
    if problem := vocabulary_mismatch(teacher_tokenizer, job, teacher_uri, job_uri):
        raise ValueError(f"{TEACHER_FIELD}: {problem}")


def layer_list(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The transformer blocks: the longest ModuleList of the model (encoder.layer, transformer.h, model.layers)."""
    name, layers = max(
        ((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)), key=lambda nm: len(nm[1])
    )
    return name, layers


def student_from_teacher(teacher: torch.nn.Module, layer_map: list[int]) -> torch.nn.Module:
    """The teacher's architecture with len(layer_map) layers, layer i a copy of the teacher's layer_map[i]; every
    other weight (embeddings, heads, norms) copied as is."""
    name, layers = layer_list(teacher)
    chosen = list(layer_map) or list(range(0, len(layers), 2))
    if max(chosen) >= len(layers):
        raise ValueError(
            f"spec.objective.distillation.layerMap: {chosen} names layer {max(chosen)}, the teacher has {len(layers)}"
        )
    config = copy.deepcopy(teacher.config)
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(config, key):
            setattr(config, key, len(chosen))
    student = type(teacher)._from_config(config, attn_implementation="sdpa").float()
    pattern = re.compile(rf"^{re.escape(name)}\.(\d+)\.")
    source = teacher.state_dict()
    state = {}
    for key in student.state_dict():
        match = pattern.match(key)
        origin = f"{name}.{chosen[int(match.group(1))]}.{key[match.end() :]}" if match else key
        state[key] = source[origin].float().clone()
    student.load_state_dict(state)
    return student


class Distilled(Objective):
    """`inner` (CausalLM or MaskedLM) with a frozen teacher's KD and cosine losses added."""

    def __init__(self, inner: Objective) -> None:
        super().__init__(inner.spec, inner.roles)
        self.inner = inner
        self.causal = inner.causal
        self.lm_part = inner.lm_part
        self.kd: DistillationSpec = inner.spec.objective.distillation
        self.teacher: torch.nn.Module | None = None
        self.use_cos = False

    @property
    def weights(self) -> dict[str, float]:
        out = {self.lm_part: self.kd.alpha_task, "kd": self.kd.alpha_kd}
        if self.use_cos:
            out["cos"] = self.kd.alpha_cos
        return out

    def load_teacher(self, tokenizer: Tokenizer, options: StorageOptions | None) -> torch.nn.Module:
        auto_class = self.inner.auto_class
        with tempfile.TemporaryDirectory(prefix="teacher-") as tmp:
            folder = download_folder(self.kd.teacher, options, Path(tmp))
            tok_file = folder / "tokenizer.json"
            check_vocabulary(
                Tokenizer.from_file(str(tok_file)) if tok_file.exists() else None,
                tokenizer,
                self.kd.teacher,
                self.spec.tokenizer.uri,
            )
            teacher = auto_class.from_pretrained(
                folder, attn_implementation="sdpa", use_safetensors=True, trust_remote_code=False
            )
        teacher.eval().requires_grad_(False)
        return teacher

    def build_model(
        self, tokenizer: Tokenizer, special: dict[str, int | None], options: StorageOptions | None
    ) -> tuple[torch.nn.Module, ModelInfo]:
        self.teacher = self.load_teacher(tokenizer, options)
        if self.kd.student_init == "teacher":
            student = student_from_teacher(self.teacher, self.kd.layer_map)
            info = model_info(student, student)
        else:
            student, info = self.inner.build_model(tokenizer, special, options)
        self.use_cos = student.config.hidden_size == self.teacher.config.hidden_size and self.kd.alpha_cos > 0
        teacher_bytes = sum(p.numel() * p.element_size() for p in self.teacher.parameters())
        log.info("teacher %s: %.1fM parameters, %.1f MiB", self.kd.teacher, teacher_bytes / 4e6, teacher_bytes / 2**20)
        return student, info

    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        return self.inner.batch(window, first_position)

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        labelled = self.inner.counts(batch)[self.lm_part]
        return {self.lm_part: labelled, "kd": labelled, "cos": float(batch["input_ids"].numel())}

    def _teacher_on(self, device: torch.device) -> torch.nn.Module:
        assert self.teacher is not None, "build_model loads the teacher"
        if next(self.teacher.parameters()).device != device:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
            self.teacher.to(device=device, dtype=dtype)
        return self.teacher

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        ids, labels = batch["input_ids"], batch["labels"]
        started = time.perf_counter()
        with torch.no_grad():
            teacher_out = self._teacher_on(ids.device)(input_ids=ids, output_hidden_states=self.use_cos)
        teacher_seconds = time.perf_counter() - started
        out = model(input_ids=ids, output_hidden_states=self.use_cos)
        task = F.cross_entropy(out.logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        sums = {self.lm_part: task, "kd": kd_sum(out.logits, teacher_out.logits, labels, self.kd.temperature)}
        if self.use_cos:
            sums["cos"] = cosine_sum(out.hidden_states[-1], teacher_out.hidden_states[-1])
        return ForwardOutput(sums, {"teacher_seconds": teacher_seconds})

    def metrics(self, sums: dict[str, float], counts: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        out = {f"{part}_loss": sums[part] / max(1.0, counts[part]) for part in self.weights}
        out["teacher_forward_seconds"] = stats["teacher_seconds"]
        return out

    def probe_target(self, model: torch.nn.Module) -> torch.nn.Module:
        return self.inner.probe_target(model)

    def export(self, manager: CheckpointManager, step: int, model: torch.nn.Module, tokenizer_uri: str) -> str:
        return self.inner.export(manager, step, model, tokenizer_uri)


def kd_sum(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Σ over labelled positions of T² · KL(softmax(teacher/T) ‖ softmax(student/T))."""
    keep = labels != -100
    s = F.log_softmax(student[keep].float() / temperature, dim=-1)
    t = F.log_softmax(teacher[keep].float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="sum") * temperature**2


def cosine_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Σ over tokens of 1 − cos(student hidden state, teacher hidden state)."""
    return (1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).sum()


__all__ = ["TEACHER_FIELD", "Distilled", "check_vocabulary", "student_from_teacher", "vocabulary_mismatch"]
