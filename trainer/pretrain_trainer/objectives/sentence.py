"""Masked LM with a sentence-level second loss (`objective.sentence.task`): BERT's next-sentence prediction (NSP,
Devlin et al., 2019) or ALBERT's sentence-order prediction (SOP, Lan et al., 2020), trained by the architecture's
*ForPreTraining model (BertForPreTraining, AlbertForPreTraining), which the export is, so that class loads it.

Each sample is rebuilt from its window of the packed stream, whose documents the loader separates by EOS:

1. the window's documents are the runs between EOS tokens; the pair comes from the longest (the first of equals);
2. its sentence boundaries are the positions after sentence-ending tokens (text ending in . ! ? and the like) and
   its start and end where the document really starts or ends (not the window's edges). It is cut at a boundary
   drawn at random, A running from the first boundary before the cut and B to the last one after it, so that both
   are whole sentences; a document without an inner boundary is cut at a random token;
3. SOP: with probability 1/2 the two are swapped (label 1, else 0: in order). NSP: with probability 1/2, B is
   replaced by the whole sentences of the longest other document of the window (label 1, NotNext; else 0,
   IsNext); a window inside one document has no other, so its pair is IsNext. The share of NotNext pairs is
   logged (`sentence_negative_ratio`);
4. the input is [CLS] A [SEP] B [SEP] (SEP: the tokenizer's EOS, [SEP] for BERT tokenizers) with token types 0 and
   1, padded; a pair longer than sequenceLength is trimmed in document order before any swap (`fit`: the longer
   segment first, A at its start and B at its end, then back to a sentence boundary), so the trimming says
   nothing about the order;
5. masked LM masks the result as for `mlm` (special tokens and padding never).

A document shorter than two tokens gives no pair: the sample keeps its MLM loss and has no sentence label. Every
draw comes from the sample's own generator (`sample_generator(seed, position, stream 2)`; the MLM mask uses stream
0), so pairs, like masks, follow the sample across world sizes and resumes. The documents other than the chosen
ones are left out of the sample, so a sentence task trains MLM on fewer tokens per sample than plain `mlm`.

    loss = MLM loss + weight · sentence loss    (each a mean over the global batch: masked tokens, labelled pairs)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from transformers import AutoModelForPreTraining

from pretrain_trainer.objectives.base import ForwardOutput
from pretrain_trainer.objectives.clm import token_loss_sum
from pretrain_trainer.objectives.masking import IGNORE_INDEX, mask_tokens, sample_generator
from pretrain_trainer.objectives.mlm import MaskedLM

if TYPE_CHECKING:
    from pretrain_trainer.config import PretrainJobSpec
    from pretrain_trainer.token_roles import TokenRoles

PAIR_STREAM = 2
"""The `sample_generator` stream of the pair draws (0: the MLM mask, 1: ELECTRA's sampling)."""


@dataclass(frozen=True)
class Run:
    """A document's tokens in a window (the runs between EOS tokens)."""

    tokens: torch.Tensor
    starts: bool
    """Whether the document starts here (an EOS precedes it), not at the window's edge."""
    ends: bool
    """Whether the document ends here (an EOS follows it)."""


def documents(row: torch.Tensor, eos_id: int) -> list[Run]:
    """The runs of `row` between EOS tokens, in order."""
    cuts = [-1, *torch.nonzero(row == eos_id).flatten().tolist(), len(row)]
    return [Run(row[a + 1 : b], a >= 0, b < len(row)) for a, b in itertools.pairwise(cuts) if b - a > 1]


def boundaries(run: Run, sentence_end: torch.Tensor) -> list[int]:
    """Positions of `run` where a whole sentence starts or ends: its start when the document starts there, after
    every sentence-ending token, and its end when the document ends there."""
    n = len(run.tokens)
    inner = (torch.nonzero(sentence_end[run.tokens]).flatten() + 1).tolist()
    return sorted({*([0] if run.starts else []), *inner, *([n] if run.ends else [])})


def sentences(run: Run, sentence_end: torch.Tensor) -> torch.Tensor:
    """The whole sentences of `run` (all of it when it has no two boundaries)."""
    edges = boundaries(run, sentence_end)
    return run.tokens[edges[0] : edges[-1]] if len(edges) > 1 else run.tokens


def fit(a: torch.Tensor, b: torch.Tensor, budget: int, sentence_end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B (consecutive, in document order) trimmed to at most `budget` tokens together, the longer one first:
    A loses its start and B its end, so the junction stays; a segment cut inside a sentence then drops the rest of
    that sentence where it has another sentence boundary, so that both segments stay whole sentences."""
    la, lb = len(a), len(b)
    while la + lb > budget:
        if la >= lb:
            la -= 1
        else:
            lb -= 1
    a2, b2 = a[len(a) - la :], b[:lb]
    if la < len(a) and (starts := torch.nonzero(sentence_end[a2[:-1]]).flatten()).numel():
        a2 = a2[int(starts[0]) + 1 :]
    if lb < len(b) and (ends := torch.nonzero(sentence_end[b2]).flatten()).numel():
        b2 = b2[: int(ends[-1]) + 1]
    return a2, b2


def sentence_pair(
    row: torch.Tensor, task: str, roles: TokenRoles, sentence_end: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """(input ids, token types, label, negative) of one sample, both [L], from its window `row` (see the module
    doc). The label is IGNORE_INDEX when the window has no document of two tokens; `negative`: label 1."""
    assert roles.eos_id is not None and roles.cls_id is not None and roles.pad_id is not None
    length = len(row)
    docs = sorted(documents(row, roles.eos_id), key=lambda run: len(run.tokens), reverse=True)  # stable
    coin = bool(torch.rand(1, generator=generator) < 0.5)
    if not docs or len(docs[0].tokens) < 2:
        a, b, label = (docs[0].tokens if docs else row[:0]), row[:0], IGNORE_INDEX
    else:
        doc, n = docs[0].tokens, len(docs[0].tokens)
        edges = boundaries(docs[0], sentence_end)
        inner = [k for k in edges if 0 < k < n]
        if inner:
            cut = inner[int(torch.randint(len(inner), (1,), generator=generator))]
            first, last = (edges[0] if edges[0] < cut else 0), (edges[-1] if edges[-1] > cut else n)
        else:  # no sentence boundary inside: a cut at any token
            cut, first, last = 1 + int(torch.randint(n - 1, (1,), generator=generator)), 0, n
        a, b = fit(doc[first:cut], doc[cut:last], length - 3, sentence_end)
        label = int(coin and (task == "sop" or len(docs) > 1))
        if label and task == "sop":
            a, b = b, a
        elif label:
            a, b = fit(a, sentences(docs[1], sentence_end), length - 3, sentence_end)
    sep = torch.tensor([roles.eos_id])
    parts = [torch.tensor([roles.cls_id]), a, sep, *((b, sep) if len(b) else ())]
    ids = torch.cat([*parts, torch.full((length - sum(len(p) for p in parts),), roles.pad_id)])
    types = torch.zeros(length, dtype=torch.long)
    if len(b):
        types[len(a) + 2 : len(a) + 3 + len(b)] = 1  # B and its [SEP]
    return ids, types, label, label == 1


class SentencePairs(MaskedLM):
    """Masked LM plus NSP or SOP (`objective.sentence`); an option of `mlm`, built by `build_objective`."""

    auto_class: ClassVar[type] = AutoModelForPreTraining

    def __init__(self, spec: PretrainJobSpec, roles: TokenRoles | None) -> None:
        super().__init__(spec, roles)
        self.task = spec.objective.sentence.task
        missing = [what for what, i in (("[CLS] or <s>", roles.cls_id), ("[PAD]", roles.pad_id)) if i is None]
        if missing or roles.eos_id is None:
            missing += [] if roles.eos_id is not None else ["an end-of-document token"]
            raise ValueError(
                f"spec.tokenizer.uri: {spec.tokenizer.uri}: objective.sentence.task {self.task} builds "
                f"[CLS] A [SEP] B [SEP] inputs, but the tokenizer has no {' and no '.join(missing)}; train it with "
                "objective=mlm (BERT's special tokens) or set objective.sentence.task: none"
            )
        ends = roles.sentence_end
        self.sentence_end = torch.zeros(roles.vocab_size, dtype=torch.bool) if ends is None else torch.from_numpy(ends)

    @property
    def weights(self) -> dict[str, float]:
        return {"mlm": 1.0, "sentence": self.spec.objective.sentence.weight}

    def batch(self, window: torch.Tensor, first_position: int) -> dict[str, torch.Tensor]:
        rows = []
        for r in range(window.shape[0]):
            generator = sample_generator(self.seed, first_position + r, PAIR_STREAM)
            rows.append(sentence_pair(window[r].long(), self.task, self.token_roles, self.sentence_end, generator))
        ids = torch.stack([r[0] for r in rows])
        masked = [
            mask_tokens(ids[r : r + 1], self.token_roles, self.masking, sample_generator(self.seed, first_position + r))
            for r in range(ids.shape[0])
        ]
        return {
            "input_ids": torch.cat([m[0] for m in masked]),
            "labels": torch.cat([m[1] for m in masked]),
            "attention_mask": (ids != self.token_roles.pad_id).long(),
            "token_type_ids": torch.stack([r[1] for r in rows]),
            "sentence_label": torch.tensor([r[2] for r in rows]),
            "negative": torch.tensor([float(r[3]) for r in rows]),
        }

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        labelled = batch["sentence_label"] != IGNORE_INDEX
        return {"mlm": float((batch["labels"] != IGNORE_INDEX).sum()), "sentence": float(labelled.sum())}

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> ForwardOutput:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        )
        logits = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits
        labels = batch["sentence_label"]
        sentence = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        correct = ((logits.argmax(-1) == labels) & (labels != IGNORE_INDEX)).sum()
        stats = {"sentence_correct": float(correct), "negatives": float(batch["negative"].sum())}
        mlm = token_loss_sum(out.prediction_logits, batch["labels"])
        return ForwardOutput({"mlm": mlm, "sentence": sentence}, stats)

    def metrics(self, sums: dict[str, float], counts: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        pairs = max(1.0, counts["sentence"])
        return {
            "mlm_loss": sums["mlm"] / max(1.0, counts["mlm"]),
            "sentence_loss": sums["sentence"] / pairs,
            "sentence_accuracy": stats["sentence_correct"] / pairs,
            "sentence_negative_ratio": stats["negatives"] / pairs,
        }


__all__ = ["Run", "SentencePairs", "boundaries", "documents", "fit", "sentence_pair", "sentences"]
