"""Causal LM: next-token prediction for decoders (GPT-2, Llama)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from pretrain_trainer.model import ModelInfo, build_model
from pretrain_trainer.objectives.base import ForwardOutput, Objective
from pretrain_trainer.objectives.masking import IGNORE_INDEX, causal_lm_batch

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from pretrain_trainer.storage import StorageOptions


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross entropy over the labelled positions (fp32 logits: bf16 softmax loses the loss's digits)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


class CausalLM(Objective):
    causal: ClassVar[bool] = True
    auto_class: ClassVar[type] = AutoModelForCausalLM
    lm_part: ClassVar[str] = "lm"

    @property
    def weights(self) -> dict[str, float]:
        return {"lm": 1.0}

    def build_model(
        self, tokenizer: Tokenizer, special: dict[str, int | None], options: StorageOptions | None
    ) -> tuple[torch.nn.Module, ModelInfo]:
        return build_model(self.spec.model, self.auto_class, tokenizer, special, options)

    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        return causal_lm_batch(window)

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"lm": float((batch["labels"] != IGNORE_INDEX).sum())}

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        logits = model(input_ids=batch["input_ids"]).logits
        return ForwardOutput({"lm": token_loss_sum(logits, batch["labels"])})
