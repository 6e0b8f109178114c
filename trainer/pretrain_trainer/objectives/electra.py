"""ELECTRA (Clark et al., 2020, "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than Generators").

A small masked-LM generator fills the masked positions with tokens sampled from its softmax (temperature 1, no
gradient through the sampling); the discriminator, the model that is kept, labels every token as original or
replaced. Loss = generator MLM loss (mean over masked tokens) + λ · discriminator BCE (mean over all tokens). A
sampled token equal to the original counts as original. The generator has the discriminator's depth and a share of
its width, and the two share one embedding module (word, position and token-type embeddings and their LayerNorm),
as in google-research/electra.

Sampling is driven by a uniform number per position drawn from the sample's own generator (its global position,
stream 1; the mask uses stream 0), so resume and world-size changes see the same replacements.

Both networks live in one `ElectraPair` module: one checkpoint, one DDP/FSDP wrap, one optimizer. The export
writes the discriminator as `ElectraForPreTraining` at the folder's root and the generator as `ElectraForMaskedLM`
in `generator/`; `model.init: pretrained` reads that layout back (a folder without `generator/` gets a new one).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import AutoConfig, ElectraForMaskedLM, ElectraForPreTraining

from pretrain_trainer.model import ModelInfo, download_folder, load_folder, model_info, scratch_config
from pretrain_trainer.objectives.base import ForwardOutput
from pretrain_trainer.objectives.masking import IGNORE_INDEX, sample_generator
from pretrain_trainer.objectives.mlm import MaskedLM

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from pretrain_trainer.checkpoint import CheckpointManager
    from pretrain_trainer.spec_objectives import ElectraSpec
    from pretrain_trainer.storage import StorageOptions

GENERATOR_FOLDER = "generator"
SAMPLING_STREAM = 1


def generator_config(discriminator: Any, spec: ElectraSpec) -> Any:
    """The generator's ElectraConfig: the discriminator's depth, vocabulary, positions and embedding size, its
    width scaled by generatorSize (heads at least 1 and dividing the hidden size), then generatorConfig."""
    d = discriminator.to_dict()
    hidden = max(1, round(discriminator.hidden_size * spec.generator_size))
    heads = max(1, round(discriminator.num_attention_heads * spec.generator_size))
    while hidden % heads:
        heads -= 1
    d.update(
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=max(1, round(discriminator.intermediate_size * spec.generator_size)),
    )
    d.update(spec.generator_config)
    shared = ("vocab_size", "max_position_embeddings", "type_vocab_size", "embedding_size", "layer_norm_eps")
    d.update({key: getattr(discriminator, key) for key in shared})
    for key in ("model_type", "architectures", "transformers_version"):
        d.pop(key, None)
    return AutoConfig.for_model("electra", **d)


class ElectraPair(torch.nn.Module):
    """Generator and discriminator with one shared embedding module; `forward` runs the whole ELECTRA step."""

    def __init__(self, generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        generator.electra.embeddings = discriminator.electra.embeddings
        generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight

    @property
    def config(self) -> Any:
        return self.discriminator.config

    def gradient_checkpointing_enable(self) -> None:
        self.generator.gradient_checkpointing_enable()
        self.discriminator.gradient_checkpointing_enable()

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor, uniforms: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(generator logits [B, L, V], discriminator logits [B, L], replaced [B, L] bool)."""
        gen_logits = self.generator(input_ids=input_ids).logits
        masked = labels != IGNORE_INDEX
        original = torch.where(masked, labels, input_ids)
        with torch.no_grad():
            sampled = sample_tokens(gen_logits[masked], uniforms[masked])
        corrupted = original.clone()
        corrupted[masked] = sampled
        replaced = corrupted != original
        disc_logits = self.discriminator(input_ids=corrupted).logits
        return gen_logits, disc_logits, replaced


def sample_tokens(logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """One token per row of `logits` [M, V] from softmax(logits) (temperature 1), by inverting the CDF at
    `uniforms` [M] in [0, 1): the draw depends only on the logits and the given numbers."""
    cdf = torch.softmax(logits.float(), dim=-1).cumsum(dim=-1)
    picked = torch.searchsorted(cdf, uniforms.float().unsqueeze(-1).to(cdf.device)).squeeze(-1)
    return picked.clamp_(max=logits.shape[-1] - 1)


class Electra(MaskedLM):
    lm_part: ClassVar[str] = "generator"

    @property
    def weights(self) -> dict[str, float]:
        return {"generator": 1.0, "discriminator": self.spec.objective.electra.discriminator_weight}

    def build_model(
        self, tokenizer: Tokenizer, special: dict[str, int | None], options: StorageOptions | None
    ) -> tuple[torch.nn.Module, ModelInfo]:
        spec, electra = self.spec.model, self.spec.objective.electra
        extended_from = None
        if spec.init == "scratch":
            disc = ElectraForPreTraining._from_config(
                scratch_config(spec, tokenizer, special), attn_implementation="sdpa"
            )
            gen = ElectraForMaskedLM._from_config(generator_config(disc.config, electra), attn_implementation="sdpa")
        else:
            with tempfile.TemporaryDirectory(prefix="pretrained-") as tmp:
                folder = download_folder(spec.from_, options, Path(tmp))
                disc, extended_from = load_folder(folder, ElectraForPreTraining, spec, tokenizer)
                if (folder / GENERATOR_FOLDER / "config.json").exists():
                    gen, _ = load_folder(folder / GENERATOR_FOLDER, ElectraForMaskedLM, spec, tokenizer)
                else:
                    gen = ElectraForMaskedLM._from_config(
                        generator_config(disc.config, electra), attn_implementation="sdpa"
                    )
        pair = ElectraPair(gen, disc)
        return pair, model_info(pair, disc, extended_from)

    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        out = super().batch(window, first_position)
        rows = [
            torch.rand(window.shape[1], generator=sample_generator(self.seed, first_position + row, SAMPLING_STREAM))
            for row in range(window.shape[0])
        ]
        out["uniforms"] = torch.stack(rows)
        return out

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {
            "generator": float((batch["labels"] != IGNORE_INDEX).sum()),
            "discriminator": float(batch["labels"].numel()),
        }

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        gen_logits, disc_logits, replaced = model(
            input_ids=batch["input_ids"], labels=batch["labels"], uniforms=batch["uniforms"]
        )
        labels = batch["labels"]
        masked = labels != IGNORE_INDEX
        gen_sum = F.cross_entropy(gen_logits.float().flatten(0, 1), labels.flatten(), reduction="sum")
        target = replaced.float()
        disc_sum = F.binary_cross_entropy_with_logits(disc_logits.float(), target, reduction="sum")
        with torch.no_grad():
            stats = {
                "generator_correct": float((gen_logits.argmax(-1) == labels)[masked].sum()),
                "discriminator_correct": float(((disc_logits > 0) == replaced).sum()),
                "replaced": float(replaced.sum()),
            }
        return ForwardOutput({"generator": gen_sum, "discriminator": disc_sum}, stats)

    def metrics(self, sums: dict[str, float], counts: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        masked, tokens = max(1.0, counts["generator"]), max(1.0, counts["discriminator"])
        return {
            "generator_loss": sums["generator"] / masked,
            "generator_accuracy": stats["generator_correct"] / masked,
            "discriminator_loss": sums["discriminator"] / tokens,
            "discriminator_accuracy": stats["discriminator_correct"] / tokens,
            "replaced_ratio": stats["replaced"] / tokens,
        }

    def probe_target(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.discriminator  # what the export holds, and what downstream tasks fine-tune

    def export(self, manager: CheckpointManager, step: int, model: torch.nn.Module, tokenizer_uri: str) -> str:
        return manager.export_hf(step, model, tokenizer_uri, parts={"": "discriminator", GENERATOR_FOLDER: "generator"})
