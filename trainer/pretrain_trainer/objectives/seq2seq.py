"""What the encoder–decoder objectives (span corruption, denoising) share: the model (`AutoModelForSeq2SeqLM`,
from a config or a Hugging Face folder), rows padded to fixed widths, teacher-forced decoder inputs, the summed
cross entropy over the target tokens, and the FLOPs of both stacks.

A subclass turns one raw window row into `(encoder input, decoder target)` with `corrupt_row`, from the sample's
own generator (`masking.sample_generator(seed, global position)`), so that a sample's corruption does not depend on
the rank, the batch or a restart. `batch` pads the encoder inputs to data.sequenceLength (attention mask 0 on the
padding) and the targets to `decoder_length` (label -100 on the padding), and builds the decoder inputs by
shifting the targets right behind the model's decoder start token (T5: pad, BART: eos).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from transformers import AutoModelForSeq2SeqLM

from pretrain_trainer.config import ARCHITECTURES
from pretrain_trainer.metrics import seq2seq_flops_per_token
from pretrain_trainer.model import ModelInfo, build_model
from pretrain_trainer.objectives.base import ForwardOutput, Objective
from pretrain_trainer.objectives.clm import token_loss_sum
from pretrain_trainer.objectives.masking import IGNORE_INDEX, sample_generator

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.storage import StorageOptions
    from pretrain_trainer.token_roles import TokenRoles


def decoder_start_id(architecture: str, roles: TokenRoles) -> int:
    """The token a new model of `architecture` starts decoding from: T5's pad, BART's eos (the other one when the
    tokenizer lacks it)."""
    first = ARCHITECTURES[architecture].get("decoder_start", "eos")
    ids = (roles.pad_id, roles.eos_id) if first == "pad" else (roles.eos_id, roles.pad_id)
    found = next((i for i in ids if i is not None), None)
    if found is None:
        raise ValueError("spec.tokenizer.uri: an encoder–decoder needs an eos or pad token to start decoding from")
    return found


class Seq2Seq(Objective):
    """Base of the encoder–decoder objectives; a subclass implements `corrupt_row` and `decoder_length`."""

    lm_part: ClassVar[str] = "lm"

    def __init__(self, spec: PretrainJobSpec, roles: TokenRoles | None) -> None:
        super().__init__(spec, roles)
        if roles is None:
            raise ValueError(f"{spec.objective.type} batches need the tokenizer's token roles")
        self.token_roles = roles
        self.decoder_start = decoder_start_id(spec.model.architecture, roles)
        self.pad = roles.pad_id if roles.pad_id is not None else self.decoder_start

    @classmethod
    @abstractmethod
    def decoder_length(cls, spec: PretrainJobSpec) -> int:
        """Width of the decoder's targets (and inputs) of every row."""

    @abstractmethod
    def corrupt_row(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder input of at most sequenceLength tokens, decoder target of at most `decoder_length` tokens)
        of one raw window row (int64, 1-D), drawn from the sample's generator."""

    @property
    def weights(self) -> dict[str, float]:
        return {"lm": 1.0}

    def build_model(
        self, tokenizer: Tokenizer, special: dict[str, int | None], options: StorageOptions | None
    ) -> tuple[torch.nn.Module, ModelInfo]:
        special = {**special, "decoder_start": self.decoder_start}
        model, info = build_model(self.spec.model, AutoModelForSeq2SeqLM, tokenizer, special, options)
        # A checkpoint brings its own conventions: decode from its start token.
        start, pad = (getattr(model.config, k, None) for k in ("decoder_start_token_id", "pad_token_id"))
        if start is not None:
            self.decoder_start = int(start)
        if pad is not None:
            self.pad = int(pad)
        return model, info

    def probe_target(self, model: torch.nn.Module) -> torch.nn.Module:
        """A probe reads the encoder's features."""
        return model.get_encoder()

    def flops_per_token(self, model: torch.nn.Module, info: ModelInfo, sequence_length: int) -> float:
        """Both stacks: the encoder over sequenceLength tokens, the decoder (and LM head) over decoder_length,
        self- and cross-attention; per encoder token (the tokens a step counts)."""
        encoder = model.get_encoder()
        shared = {id(p) for p in model.get_input_embeddings().parameters()}
        encoder_params = sum(p.numel() for p in encoder.parameters() if id(p) not in shared)
        cfg = model.config
        return seq2seq_flops_per_token(
            encoder_params=encoder_params,
            decoder_params=info.num_params - encoder_params,
            encoder_layers=cfg.num_layers if hasattr(cfg, "num_layers") else cfg.encoder_layers,
            decoder_layers=getattr(cfg, "num_decoder_layers", None) or cfg.decoder_layers,
            hidden=cfg.d_model,
            encoder_length=sequence_length,
            decoder_length=self.decoder_length(self.spec),
        )

    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        rows = window.shape[0]
        width, target_width = self.spec.data.sequence_length, self.decoder_length(self.spec)
        input_ids = torch.full((rows, width), self.pad, dtype=torch.long)
        attention_mask = torch.zeros((rows, width), dtype=torch.long)
        labels = torch.full((rows, target_width), IGNORE_INDEX, dtype=torch.long)
        for row in range(rows):
            inputs, targets = self.corrupt_row(window[row].long(), sample_generator(self.seed, first_position + row))
            input_ids[row, : len(inputs)] = inputs
            attention_mask[row, : len(inputs)] = 1
            labels[row, : len(targets)] = targets
        decoder_input_ids = torch.full_like(labels, self.pad)
        decoder_input_ids[:, 0] = self.decoder_start
        decoder_input_ids[:, 1:] = torch.where(labels[:, :-1] == IGNORE_INDEX, self.pad, labels[:, :-1])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "labels": labels,
        }

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return {"lm": float((batch["labels"] != IGNORE_INDEX).sum())}

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"],
        ).logits
        return ForwardOutput({"lm": token_loss_sum(logits, batch["labels"])})
