"""The interface every training objective implements, so the training loop never branches on the objective type.

An objective says which model it trains (`build_model`), how a loader window becomes model inputs (`batch`), and
how a forward pass gives its loss. The loss is a weighted sum of *parts*, each a mean over the whole global batch:

    loss = Σ_part weights[part] · (Σ over the global batch of the part's per-item losses) / counts[part]

`counts(batch)` gives each part's normaliser for a rank's share of the global batch (label tokens for LM losses,
all tokens for ELECTRA's discriminator); the trainer all-reduces them once per step, before any backward pass, so
every micro batch on every rank is scaled by the same global numbers and any world size follows the same curve.
`forward` returns the parts' differentiable sums and any extra statistics (sums too, e.g. correct predictions);
`metrics` turns the all-reduced sums into the per-step numbers the objective adds to the logs and /metrics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from pretrain_trainer.metrics import model_flops_per_token

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from pretrain_trainer.checkpoint import CheckpointManager
    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.model import ModelInfo
    from pretrain_trainer.storage import StorageOptions
    from pretrain_trainer.token_roles import TokenRoles


@dataclass
class ForwardOutput:
    sums: dict[str, torch.Tensor]
    """Per loss part: the sum of its per-item losses over the micro batch (differentiable)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Extra sums the objective's `metrics` reads (all-reduced with the loss sums)."""


class Objective(ABC):
    """One training objective; built by `objectives.build_objective(spec, roles)`."""

    causal: ClassVar[bool] = False
    """Whether the loader reads windows of L + 1 tokens (inputs and labels shifted by one)."""
    lm_part: ClassVar[str]
    """The loss part whose mean is a language-model loss: validation perplexity is exp of it."""

    def __init__(self, spec: PretrainJobSpec, roles: TokenRoles | None) -> None:
        self.spec = spec
        self.roles = roles
        self.seed = spec.training.seed

    @classmethod
    def raw_length(cls, spec: PretrainJobSpec) -> int:
        """Tokens the loader reads per sample (plus one when `causal`), and the stride between samples in the
        stream: data.sequenceLength, unless the objective turns longer raw windows into sequenceLength-token
        inputs (span corruption)."""
        return spec.data.sequence_length

    def flops_per_token(self, model: torch.nn.Module, info: ModelInfo, sequence_length: int) -> float:
        """Training FLOPs per input token for MFU (`metrics.model_flops_per_token` of the main network)."""
        return model_flops_per_token(info.num_params, info.num_layers, info.hidden_size, sequence_length)

    @property
    @abstractmethod
    def weights(self) -> dict[str, float]:
        """Weight of each loss part in the training loss."""

    @abstractmethod
    def build_model(
        self, tokenizer: Tokenizer, special: dict[str, int | None], options: StorageOptions | None
    ) -> tuple[torch.nn.Module, ModelInfo]:
        """Every trainable module of the job as one module (one checkpoint, one DDP/FSDP wrap), on the CPU."""

    @abstractmethod
    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        """Model inputs for rows of `window` at global positions first_position, first_position + 1, ...; every
        tensor's first dimension is the row, so micro batches are slices."""

    @abstractmethod
    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Each loss part's normaliser contributed by `batch` (summed over ranks by the trainer)."""

    @abstractmethod
    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        """One forward pass over a micro batch (already on the model's device, under the trainer's autocast)."""

    def metrics(self, sums: dict[str, float], counts: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        """Per-step numbers this objective adds (name → value) from all-reduced sums; none by default."""
        return {}

    def loss(self, sums: dict[str, Any], counts: dict[str, float]) -> Any:
        """The training loss from part sums (tensors or floats) and global counts (an empty part counts 1)."""
        return sum(self.weights[part] * sums[part] / max(1.0, counts[part]) for part in self.weights)

    def probe_target(self, model: torch.nn.Module) -> torch.nn.Module:
        """The part of the trained `model` (unwrapped) that a downstream probe reads: a Hugging Face model that
        takes input_ids, attention_mask and output_hidden_states. The model itself by default."""
        return model

    def export(self, manager: CheckpointManager, step: int, model: torch.nn.Module, tokenizer_uri: str) -> str:
        """Write the trained model(s) in Hugging Face format; returns the folder's URI. Call on every rank."""
        return manager.export_hf(step, model, tokenizer_uri)
