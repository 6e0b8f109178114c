"""ELECTRA: the generator/discriminator pair, its shared embeddings, sampling, the loss against a hand-computed
reference, and the Hugging Face export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import AutoModel, ElectraForMaskedLM, ElectraForPreTraining

from pretrain_trainer.checkpoint import CheckpointManager
from pretrain_trainer.config import parse_spec
from pretrain_trainer.objectives import IGNORE_INDEX, Electra, ElectraPair, build_objective, sample_generator
from pretrain_trainer.objectives.electra import generator_config, sample_tokens
from pretrain_trainer.token_roles import TokenRoles

VOCAB = 40
MASK = 2
DISC = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "embedding_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 32,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def spec(**electra):
    return parse_spec(
        {
            "tokenizer": {"uri": "unused"},
            "data": {"train": "unused", "sequenceLength": 16},
            "model": {"architecture": "electra", "config": DISC},
            "objective": {"type": "electra", "electra": electra},
            "training": {"globalBatchSamples": 4, "microBatchSize": 2, "seed": 3},
        }
    )


def roles() -> TokenRoles:
    return TokenRoles(
        vocab_size=VOCAB, special_ids=frozenset({0, 1}), mask_id=MASK, pad_id=0, word_start=np.ones(VOCAB, bool)
    )


def pair(**electra) -> tuple[Electra, ElectraPair]:
    objective = build_objective(spec(**electra), roles())
    torch.manual_seed(0)
    disc = ElectraForPreTraining._from_config(ElectraForPreTraining.config_class(**DISC))
    gen = ElectraForMaskedLM._from_config(generator_config(disc.config, objective.spec.objective.electra))
    return objective, ElectraPair(gen, disc)


def window(rows: int = 4) -> torch.Tensor:
    return torch.randint(3, VOCAB, (rows, 16), generator=torch.Generator().manual_seed(7))


def test_the_generator_is_a_quarter_as_wide_with_the_same_depth_by_default():
    _, model = pair()
    g, d = model.generator.config, model.discriminator.config
    assert (g.hidden_size, g.intermediate_size, g.num_attention_heads) == (8, 16, 1)
    assert g.num_hidden_layers == d.num_hidden_layers and g.embedding_size == d.embedding_size
    _, explicit = pair(generatorConfig={"hidden_size": 16, "num_attention_heads": 2})
    assert explicit.generator.config.hidden_size == 16


def test_generator_and_discriminator_share_one_embedding_tensor():
    _, model = pair()
    word = model.discriminator.electra.embeddings.word_embeddings.weight
    assert model.generator.electra.embeddings.word_embeddings.weight is word
    assert model.generator.generator_lm_head.weight is word
    assert model.generator.electra.embeddings.position_embeddings.weight is (
        model.discriminator.electra.embeddings.position_embeddings.weight
    )
    assert sum(p is word for p in model.parameters()) == 1


def test_sampling_inverts_the_softmax_cdf_at_the_given_numbers():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]))
    assert sample_tokens(logits, torch.tensor([0.05, 0.74])).tolist() == [0, 1]
    assert sample_tokens(logits, torch.tensor([0.71, 0.9999999])).tolist() == [2, 2]


def test_the_sampling_numbers_follow_the_sample_position_not_the_batch():
    objective, _ = pair()
    whole = objective.batch(window(), 100)
    alone = objective.batch(window()[2:3], 102)
    assert torch.equal(whole["uniforms"][2], alone["uniforms"][0])
    assert torch.equal(whole["input_ids"][2], alone["input_ids"][0])
    mask_stream = torch.rand(16, generator=sample_generator(3, 102))
    assert not torch.equal(mask_stream, alone["uniforms"][0]), "sampling must not reuse the mask's random numbers"


@torch.no_grad()
def test_electra_loss_equals_a_hand_computed_reference_on_a_fixed_batch():
    objective, model = pair(discriminatorWeight=7.5)
    batch = objective.batch(window(), 0)
    model.eval()
    out = objective.forward(model, batch)
    counts = objective.counts(batch)
    loss = objective.loss(out.sums, counts)

    ids, labels, u = batch["input_ids"], batch["labels"], batch["uniforms"]
    masked = labels != IGNORE_INDEX
    gen_logits = model.generator(input_ids=ids).logits
    gen_loss = 0.0
    corrupted = torch.where(masked, labels, ids).clone()
    for b, t in masked.nonzero().tolist():
        logp = torch.log_softmax(gen_logits[b, t].double(), -1)
        gen_loss -= float(logp[labels[b, t]])
        cdf = torch.cumsum(logp.exp(), 0)
        corrupted[b, t] = min(int((cdf < float(u[b, t])).sum()), VOCAB - 1)
    gen_loss /= int(masked.sum())
    original = torch.where(masked, labels, ids)
    is_replaced = corrupted != original
    disc_logits = model.discriminator(input_ids=corrupted).logits.double()
    disc_loss = 0.0
    for x, y in zip(disc_logits.flatten().tolist(), is_replaced.flatten().tolist(), strict=True):
        p = 1 / (1 + math.exp(-x))
        disc_loss -= math.log(p) if y else math.log(1 - p)
    disc_loss /= ids.numel()
    assert float(loss) == pytest.approx(gen_loss + 7.5 * disc_loss, rel=1e-5)
    metrics = objective.metrics({k: float(v) for k, v in out.sums.items()}, counts, out.stats)
    assert metrics["generator_loss"] == pytest.approx(gen_loss, rel=1e-5)
    assert metrics["discriminator_loss"] == pytest.approx(disc_loss, rel=1e-5)
    assert metrics["replaced_ratio"] == pytest.approx(float(is_replaced.float().mean()))


def test_a_sampled_token_equal_to_the_original_counts_as_original():
    objective, model = pair()
    batch = objective.batch(window(), 0)
    with torch.no_grad():  # a generator certain of the original token: every sample equals it
        model.generator.generator_lm_head.bias.fill_(-1e4)
        bias = model.generator.generator_lm_head.bias
        masked = batch["labels"] != IGNORE_INDEX
        bias[batch["labels"][masked][0]] = 1e4
        only = batch["labels"][masked][0]
    batch["labels"] = torch.where(batch["labels"] == IGNORE_INDEX, batch["labels"], only)
    _, _, replaced = model(batch["input_ids"], batch["labels"], batch["uniforms"])
    assert not replaced.any()


def test_the_export_loads_as_electra_for_pretraining_and_masked_lm_with_the_tokenizer(tmp_path):
    objective, model = pair()
    tok = tmp_path / "tok"
    tok.mkdir()
    Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0")).save(str(tok / "tokenizer.json"))
    manager = CheckpointManager(str(tmp_path / "ckpt"))
    assert objective.export(manager, 5, model, str(tok)).endswith("hf/step-00000005")
    out = tmp_path / "ckpt" / "hf" / "step-00000005"
    disc = ElectraForPreTraining.from_pretrained(out)
    gen = ElectraForMaskedLM.from_pretrained(out / "generator")
    assert type(AutoModel.from_pretrained(out)).__name__ == "ElectraModel"
    ids = window()
    with torch.no_grad():
        assert torch.allclose(disc(input_ids=ids).logits, model.discriminator(input_ids=ids).logits, atol=1e-6)
        assert torch.allclose(gen(input_ids=ids).logits, model.generator(input_ids=ids).logits, atol=1e-6)
    assert (out / "tokenizer.json").exists() and (out / "generator" / "tokenizer.json").exists()
