"""Masked LM for encoders (BERT, RoBERTa, ELECTRA's architecture): dynamic masking seeded per sample
(`masking.masked_rows`), cross entropy over the chosen positions."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from transformers import AutoModelForMaskedLM

from pretrain_trainer.model import ModelInfo, build_model
from pretrain_trainer.objectives.base import ForwardOutput, Objective
from pretrain_trainer.objectives.clm import token_loss_sum
from pretrain_trainer.objectives.masking import IGNORE_INDEX, MaskingConfig, masked_rows
from pretrain_trainer.token_roles import TokenRoles, require_mask

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.storage import StorageOptions


def checked_roles(roles: TokenRoles | None, tokenizer_uri: str) -> TokenRoles:
    """The roles of a tokenizer that masking can use (it has a mask token), or ValueError naming the tokenizer."""
    if roles is None:
        raise ValueError("masked LM batches need the tokenizer's token roles")
    try:
        require_mask(roles)
    except ValueError as err:
        raise ValueError(f"spec.tokenizer.uri: {tokenizer_uri}: {err}") from err
    return roles


class MaskedLM(Objective):
    auto_class: ClassVar[type] = AutoModelForMaskedLM
    lm_part: ClassVar[str] = "mlm"

    def __init__(self, spec: PretrainJobSpec, roles: TokenRoles | None) -> None:
        super().__init__(spec, roles)
        self.token_roles = checked_roles(roles, spec.tokenizer.uri)
        self.masking = MaskingConfig.from_spec(spec.objective.mlm)

    @property
    def weights(self) -> dict[str, float]:
        return {"mlm": 1.0}

    def build_model(
        self, tokenizer: Tokenizer, special: dict[str, int | None], options: StorageOptions | None
    ) -> tuple[torch.nn.Module, ModelInfo]:
        return build_model(self.spec.model, self.auto_class, tokenizer, special, options)

    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        return masked_rows(window, first_position, self.seed, self.token_roles, self.masking)

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"mlm": float((batch["labels"] != IGNORE_INDEX).sum())}

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        logits = model(input_ids=batch["input_ids"]).logits
        return ForwardOutput({"mlm": token_loss_sum(logits, batch["labels"])})
