"""Training objectives, one module each, behind one interface (`base.Objective`): the trainer asks the job's
objective for its model, its batches, its loss parts and its metrics, and never branches on the objective type.

    objective = build_objective(spec, roles)   # roles: TokenRoles of the job's tokenizer
    model, info = objective.build_model(tokenizer, special_ids, storage_options)
    batch = objective.batch(window, first_position)

The masking helpers that the objectives share live in `masking` (re-exported here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pretrain_trainer.objectives.base import ForwardOutput, Objective
from pretrain_trainer.objectives.clm import CausalLM
from pretrain_trainer.objectives.denoising import Denoising
from pretrain_trainer.objectives.distillation import Distilled
from pretrain_trainer.objectives.electra import Electra, ElectraPair
from pretrain_trainer.objectives.masking import (
    IGNORE_INDEX,
    MaskingConfig,
    causal_lm_batch,
    corrupt,
    geometric_success_probability,
    mask_tokens,
    masked_lm_batch,
    masked_rows,
    sample_generator,
    sample_span_lengths,
    select_targets,
    word_starts,
)
from pretrain_trainer.objectives.mlm import MaskedLM
from pretrain_trainer.objectives.sentence import SentencePairs
from pretrain_trainer.objectives.seq2seq import Seq2Seq
from pretrain_trainer.objectives.span_corruption import SpanCorruption

if TYPE_CHECKING:
    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.token_roles import TokenRoles

OBJECTIVES: dict[str, type[Objective]] = {
    "clm": CausalLM,
    "mlm": MaskedLM,
    "electra": Electra,
    "span-corruption": SpanCorruption,
    "denoising": Denoising,
}
"""objective.type → its class (the spec's enum lists the same names)."""


def objective_class(type_: str) -> type[Objective]:
    return OBJECTIVES[type_]


def build_objective(spec: PretrainJobSpec, roles: TokenRoles | None) -> Objective:
    """The job's objective (`SentencePairs` for mlm with objective.sentence, wrapped in `Distilled` when it has a
    teacher); raises ValueError naming the field when
    the tokenizer cannot serve it."""
    cls = objective_class(spec.objective.type)
    if spec.objective.sentence.task != "none":  # an option of mlm (spec_checks refuses it elsewhere)
        cls = SentencePairs
    objective = cls(spec, roles)
    return Distilled(objective) if spec.objective.distillation.teacher else objective


__all__ = [
    "IGNORE_INDEX",
    "OBJECTIVES",
    "CausalLM",
    "Denoising",
    "Distilled",
    "Electra",
    "ElectraPair",
    "ForwardOutput",
    "MaskedLM",
    "MaskingConfig",
    "Objective",
    "SentencePairs",
    "Seq2Seq",
    "SpanCorruption",
    "build_objective",
    "causal_lm_batch",
    "corrupt",
    "geometric_success_probability",
    "mask_tokens",
    "masked_lm_batch",
    "masked_rows",
    "objective_class",
    "sample_generator",
    "sample_span_lengths",
    "select_targets",
    "word_starts",
]
