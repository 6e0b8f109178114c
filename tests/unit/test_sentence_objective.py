"""The sentence-level second loss (`objective.sentence`, objectives/sentence.py): BERT's NSP and ALBERT's SOP pairs
built from the documents of a packed window, seeded per sample; the loss against a hand-computed reference; the
export loading as BertForPreTraining / AlbertForPreTraining; the specs and tokenizers it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import AlbertForPreTraining, BertForPreTraining

from pretrain_trainer.checkpoint import CheckpointManager
from pretrain_trainer.config import ConfigError, parse_spec
from pretrain_trainer.objectives import IGNORE_INDEX, SentencePairs, build_objective, sample_generator
from pretrain_trainer.objectives.sentence import PAIR_STREAM, sentence_pair
from pretrain_trainer.token_roles import TokenRoles
from tests.support.jobs import TINY_BERT

VOCAB, PAD, CLS, MASK, SEP, STOP = 40, 0, 1, 2, 3, 4  # SEP is the stream's EOS; STOP ends a sentence
TINY = {**TINY_BERT, "vocab_size": VOCAB}
ARCH = {"bert": TINY, "albert": {**TINY, "embedding_size": 16, "classifier_dropout_prob": 0.0}}
# 16 tokens, three documents. DOC1 is cut by the window's start (its first sentence may be partial) and ends at an
# EOS; its sentence boundaries are 3, 6 and 8 (its end). Cut at 3, A is all there is before it; cut at 6, A is the
# whole sentence 3:6. DOC2 is a whole document; DOC3 is cut by the window's end.
DOC1 = [5, 6, STOP, 7, 8, STOP, 9, 10]
DOC2, DOC3 = [20, 21, 22], [23, 24, 25]
ROW = torch.tensor([*DOC1, SEP, *DOC2, SEP, *DOC3])
IN_ORDER = [(DOC1[:3], DOC1[3:]), (DOC1[3:6], DOC1[6:])]


def roles(cls_id: int | None = CLS) -> TokenRoles:
    ends = np.zeros(VOCAB, bool)
    ends[STOP] = True
    return TokenRoles(
        vocab_size=VOCAB,
        special_ids=frozenset({PAD, CLS, SEP}),
        mask_id=MASK,
        pad_id=PAD,
        word_start=np.ones(VOCAB, bool),
        eos_id=SEP,
        cls_id=cls_id,
        sentence_end=ends,
    )


def job(task: str, architecture: str = "bert", weight: float = 1.0, **objective):
    return {
        "tokenizer": {"uri": "job-tokenizer"},
        "data": {"train": "unused", "sequenceLength": 16},
        "model": {"architecture": architecture, "config": ARCH.get(architecture, {})},
        "objective": {"type": "mlm", "sentence": {"task": task, "weight": weight}, **objective},
        "training": {"globalBatchSamples": 4, "microBatchSize": 2, "seed": 3},
    }


def objective(task: str, architecture: str = "bert", weight: float = 1.0) -> SentencePairs:
    out = build_objective(parse_spec(job(task, architecture, weight)), roles())
    assert isinstance(out, SentencePairs)
    return out


def segments(ids: torch.Tensor, types: torch.Tensor) -> tuple[list[int], list[int]]:
    """A and B back from [CLS] A [SEP] B [SEP] [PAD]...: the checks read the layout, not the builder's variables."""
    assert int(ids[0]) == CLS
    real = ids != PAD
    a = ids[1:][(types[1:] == 0) & real[1:]].tolist()
    b = ids[types == 1].tolist()
    assert a[-1] == SEP and (not b or b[-1] == SEP)
    assert real.tolist() == sorted(real.tolist(), reverse=True)  # padding only at the end
    return a[:-1], b[:-1]


def pairs(task: str, row: torch.Tensor, n: int = 200) -> list[tuple[list[int], list[int], int]]:
    ends = torch.from_numpy(roles().sentence_end)
    out = []
    for position in range(n):
        generator = sample_generator(3, position, PAIR_STREAM)
        ids, types, label, negative = sentence_pair(row, task, roles(), ends, generator)
        assert negative == (label == 1) and ids.shape == types.shape == row.shape
        out.append((*segments(ids, types), label))
    return out


def test_sop_pairs_are_consecutive_whole_sentences_of_one_document_in_or_out_of_order():
    made = pairs("sop", ROW)
    assert {((b, a) if label == 1 else (a, b)) == pair for a, b, label in made for pair in IN_ORDER} == {True, False}
    assert all(((b, a) if label == 1 else (a, b)) in IN_ORDER for a, b, label in made)
    assert 70 < sum(label for *_, label in made) < 130  # about half swapped
    assert {tuple(a) for a, _, _ in made} == {tuple(x) for pair in IN_ORDER for x in pair}  # every cut, both orders


def test_nsp_negatives_take_b_from_another_document_of_the_window_and_a_single_document_is_always_is_next():
    made = pairs("nsp", ROW)
    for a, b, label in made:
        assert (a, b) in IN_ORDER if label == 0 else (a in [pair[0] for pair in IN_ORDER] and b == DOC2)
    assert 70 < sum(label for *_, label in made) < 130
    one_document = torch.arange(5, 21)  # no EOS and no sentence end: a cut anywhere, never NotNext
    made = pairs("nsp", one_document, 50)
    assert {label for *_, label in made} == {0}
    assert all(len(a) + len(b) == 13 and a[-1] + 1 == b[0] for a, b, _ in made)


def test_a_long_pair_is_trimmed_at_its_outer_ends_to_whole_sentences_and_a_window_without_a_pair_has_no_label():
    row = torch.arange(5, 21)  # one document of 16 tokens, no sentence ends: 13 fit beside [CLS] [SEP] [SEP]
    for a, b, label in pairs("sop", row, 60):
        first, second = (b, a) if label == 1 else (a, b)
        assert len(first) + len(second) == 13 and first[-1] + 1 == second[0]  # the junction is kept
        assert first == list(range(first[0], first[-1] + 1)) and second == list(range(second[0], second[-1] + 1))
    doc = [5, 6, STOP, 7, 8, 9, STOP, 10, 11, 12, STOP, 13, 14, STOP, 15, 16]  # no EOS: cut by both window edges
    for a, b, label in pairs("sop", torch.tensor(doc), 60):
        first, second = (b, a) if label == 1 else (a, b)
        start = doc.index(first[0])  # a word, not a sentence end: it occurs once
        assert len(first) + len(second) <= 13 and doc[start : start + len(first) + len(second)] == first + second
        assert first[-1] == STOP  # cut after a sentence end
        assert first[0] == 5 or doc[doc.index(first[0]) - 1] == STOP  # A starts a sentence (or the window)
        assert second[-1] in (STOP, 16)  # B ends a sentence (or the window)
    lonely = torch.tensor([SEP, 5, SEP, SEP, 6, SEP, SEP, SEP, 7, SEP, SEP, SEP, SEP, SEP, SEP, SEP])
    assert {label for *_, label in pairs("nsp", lonely, 20)} == {IGNORE_INDEX}


def test_pairs_and_masks_follow_the_sample_position_not_the_batch_and_never_mask_special_tokens():
    nsp = objective("nsp")
    window = torch.stack([ROW, torch.roll(ROW, 4), torch.roll(ROW, 9), ROW])
    whole = nsp.batch(window, 8)
    tail = nsp.batch(window[2:], 10)  # rows 2 and 3 read by another rank, or after a resume
    assert all(torch.equal(whole[k][2:], tail[k]) for k in whole)
    # Rows 0 and 3 hold the same window at other positions: their own draws.
    assert any(not torch.equal(whole[k][0], whole[k][3]) for k in ("input_ids", "token_type_ids", "labels"))
    labelled = whole["labels"] != IGNORE_INDEX
    assert labelled.any() and not torch.isin(whole["labels"][labelled], torch.tensor([PAD, CLS, SEP])).any()
    assert torch.equal(whole["attention_mask"], (whole["input_ids"] != PAD).long())
    other_seed = build_objective(parse_spec({**job("nsp"), "training": {**job("nsp")["training"], "seed": 4}}), roles())
    assert any(not torch.equal(whole[k], other_seed.batch(window, 8)[k]) for k in ("input_ids", "sentence_label"))


def tokenizer_dir(tmp_path) -> str:
    folder = tmp_path / "tok"
    folder.mkdir()
    Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0")).save(str(folder / "tokenizer.json"))
    return str(folder)


@pytest.mark.parametrize(
    ("architecture", "task", "cls"), [("bert", "nsp", BertForPreTraining), ("albert", "sop", AlbertForPreTraining)]
)
def test_the_loss_equals_a_hand_computed_reference_and_the_export_loads_with_the_pretraining_class(
    architecture, task, cls, tmp_path
):
    pairs_objective = objective(task, architecture, weight=0.7)
    torch.manual_seed(0)
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    model, _ = pairs_objective.build_model(tok, {"pad": PAD}, None)
    assert type(model) is cls
    model.eval()
    window = torch.stack([ROW, torch.roll(ROW, 4), torch.roll(ROW, 9), torch.arange(5, 21)])
    batch = pairs_objective.batch(window, 0)
    with torch.no_grad():
        out = pairs_objective.forward(model, batch)
        loss = float(pairs_objective.loss(out.sums, pairs_objective.counts(batch)))
        raw = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        )
    token_logits = raw.prediction_logits.double()
    pair_logits = (raw.seq_relationship_logits if task == "nsp" else raw.sop_logits).double()
    masked = (batch["labels"] != IGNORE_INDEX).nonzero().tolist()
    mlm = -sum(float(torch.log_softmax(token_logits[b, i], -1)[batch["labels"][b, i]]) for b, i in masked)
    labelled = [b for b in range(4) if batch["sentence_label"][b] != IGNORE_INDEX]
    sentence = -sum(float(torch.log_softmax(pair_logits[b], -1)[batch["sentence_label"][b]]) for b in labelled)
    assert masked and len(labelled) == 4 and set(batch["sentence_label"].tolist()) == {0, 1}
    assert loss == pytest.approx(mlm / len(masked) + 0.7 * sentence / len(labelled), rel=1e-5)

    exported = pairs_objective.export(CheckpointManager(str(tmp_path / "ckpt")), 5, model, tokenizer_dir(tmp_path))
    loaded = cls.from_pretrained(exported.removeprefix("file://"))
    with torch.no_grad():
        again = loaded(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        )
    assert torch.allclose(again.prediction_logits, raw.prediction_logits, atol=1e-5)
    name = "seq_relationship_logits" if task == "nsp" else "sop_logits"
    assert torch.allclose(getattr(again, name), getattr(raw, name), atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**job("nsp"), "objective": {"type": "clm", "sentence": {"task": "nsp"}}}, "nsp is a second loss beside"),
        (job("nsp", "albert"), r"nsp needs model.architecture bert \(its \*ForPreTraining head\), got albert"),
        (job("sop", "roberta"), "sop needs model.architecture bert or albert .* got roberta"),
        (job("sop", distillation={"teacher": "s3://bucket/t"}), "sop does not combine with distillation"),
        (job("sbo"), "'sbo' is not one of none, nsp, sop"),
        (job("sop", weight=0), "must be > 0.0, got 0"),
    ],
)
def test_specs_the_sentence_task_cannot_serve_are_refused_naming_the_field(spec, message):
    with pytest.raises(ConfigError, match=rf"spec\.objective\.sentence\.\w+: .*{message}"):
        parse_spec(spec)


def test_off_by_default_and_a_tokenizer_without_cls_is_refused_naming_it():
    assert parse_spec({**job("sop"), "objective": {"type": "mlm"}}).objective.sentence.task == "none"
    with pytest.raises(ValueError, match=r"spec.tokenizer.uri: job-tokenizer: .*sop .* has no \[CLS\] or <s>"):
        build_objective(parse_spec(job("sop")), roles(cls_id=None))
