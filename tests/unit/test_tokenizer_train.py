import json

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from pretrain_trainer.token_roles import TokenRoles
from pretrain_trainer.tokenizer.load import load_tokenizer
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec, build_normalizer, save_tokenizer
from tests.support.data import bundled_texts, trained

SWEDISH = "Åsa åt ärtsoppa i Örebro och Ängelholm."


@pytest.mark.parametrize("model", ["bpe", "wordpiece", "unigram"])
@pytest.mark.parametrize("objective", ["clm", "mlm"])
def test_each_model_trains_to_the_requested_vocab_with_its_special_tokens(model, objective):
    spec = TokenizerTrainingSpec(model=model, vocab_size=1000, objective=objective)
    tok = trained(spec)
    assert tok.get_vocab_size() <= 1000
    assert tok.get_vocab_size() > 500, "the bundled corpus is large enough to fill most of the vocabulary"
    for special in spec.special_tokens.all():
        assert tok.token_to_id(special) is not None, special
    # Special tokens take the first ids, so models can rely on small fixed ids (pad = 0).
    assert tok.token_to_id(spec.special_tokens.pad) == 0


def test_byte_level_bpe_round_trips_every_bundled_document_exactly():
    tok = trained(TokenizerTrainingSpec(model="bpe", vocab_size=2000, normalization="none"))
    for text in bundled_texts():
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text


def test_lowercase_keeps_accents_unless_strip_accents_is_asked_for():
    assert build_normalizer(TokenizerTrainingSpec(lowercase=True)).normalize_str(SWEDISH) == SWEDISH.lower()
    stripped = build_normalizer(TokenizerTrainingSpec(lowercase=True, strip_accents=True)).normalize_str(SWEDISH)
    assert stripped == "asa at artsoppa i orebro och angelholm."


def test_mlm_tokenizer_wraps_sequences_in_cls_and_sep():
    tok = trained(TokenizerTrainingSpec(model="wordpiece", vocab_size=1000, objective="mlm"))
    tokens = tok.encode("Hej världen").tokens
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("model", {"model": "sentencepiece"}),
        ("objective", {"objective": "seq2seq"}),
        ("normalization", {"normalization": "nfd"}),
        ("vocab_size", {"vocab_size": 100}),
        ("min_frequency", {"min_frequency": 0}),
    ],
)
def test_bad_spec_names_the_field(field, kwargs):
    with pytest.raises(ValueError, match=field):
        TokenizerTrainingSpec(**kwargs)


def test_saved_folder_loads_in_transformers_with_roles(tmp_path):
    spec = TokenizerTrainingSpec(model="bpe", vocab_size=1000, objective="clm")
    uri = save_tokenizer(trained(spec), spec, str(tmp_path / "tok"))
    assert uri.endswith("tokenizer.json")
    auto = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert auto.eos_token == "<|endoftext|>" and auto.pad_token == "<|pad|>"
    assert auto.decode(auto(SWEDISH)["input_ids"]) == SWEDISH
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok" / "tokenizer.json"))
    assert fast.decode(fast(SWEDISH)["input_ids"]) == SWEDISH
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_mlm_roles_reach_transformers(tmp_path):
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=1000, objective="mlm")
    save_tokenizer(trained(spec), spec, str(tmp_path))
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert (auto.mask_token, auto.cls_token, auto.sep_token, auto.pad_token) == ("[MASK]", "[CLS]", "[SEP]", "[PAD]")


@pytest.mark.parametrize(
    ("objective", "model", "pad", "eos"),
    [("clm", "bpe", "<|pad|>", "<|endoftext|>"), ("mlm", "wordpiece", "[PAD]", "[SEP]")],
)
def test_the_loaded_tokenizer_resolves_the_roles_that_the_model_and_the_objectives_use(
    tmp_path, objective, model, pad, eos
):
    spec = TokenizerTrainingSpec(model=model, vocab_size=1000, objective=objective)
    save_tokenizer(trained(spec), spec, str(tmp_path))
    loaded = load_tokenizer(str(tmp_path))
    ids = loaded.model_token_ids()
    assert ids == {
        "pad": loaded.tokenizer.token_to_id(pad),
        "eos": loaded.tokenizer.token_to_id(eos),
        "bos": ids["eos"],
    }
    roles = TokenRoles.from_tokenizer(loaded.tokenizer)
    assert roles.pad_id == ids["pad"] is not None
    assert (roles.mask_id is not None) == (objective == "mlm")


@pytest.mark.parametrize("model", ["bpe", "wordpiece"])
def test_a_span_corruption_tokenizer_has_t5s_sentinels_that_no_text_ever_encodes_to(tmp_path, model):
    spec = TokenizerTrainingSpec(model=model, vocab_size=1000, objective="span-corruption", sentinels=40)
    save_tokenizer(trained(spec), spec, str(tmp_path))
    loaded = load_tokenizer(str(tmp_path))
    roles = TokenRoles.from_tokenizer(loaded.tokenizer, eos_id=loaded.eos_id)
    vocab = loaded.tokenizer.get_vocab(with_added_tokens=True)
    assert [vocab[f"<extra_id_{i}>"] for i in range(40)] == list(roles.sentinel_ids)
    assert "<extra_id_40>" not in vocab
    assert loaded.eos_token == "</s>" and roles.pad_id == vocab["<pad>"] == 0
    assert set(roles.sentinel_ids) <= roles.special_ids
    sentinels = set(roles.sentinel_ids)
    for enc in loaded.tokenizer.encode_batch(list(bundled_texts()), add_special_tokens=False):
        assert not sentinels & set(enc.ids)
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto.eos_token == "</s>" and "<extra_id_0>" in auto.all_special_tokens
    assert auto("ett test")["input_ids"][-1] == vocab["</s>"], "T5 ends an encoded text with </s>"


def test_a_denoising_tokenizer_has_barts_roles():
    spec = TokenizerTrainingSpec(model="bpe", vocab_size=1000, objective="denoising")
    tok = trained(spec)
    roles = TokenRoles.from_tokenizer(tok)
    assert roles.mask_id == tok.token_to_id("<mask>") and roles.eos_id == tok.token_to_id("</s>")
    assert roles.sentinel_ids == ()
    assert tok.encode("ett test").tokens[0] == "<s>" and tok.encode("ett test").tokens[-1] == "</s>"
    assert roles.sentence_end[tok.token_to_id(".")] and not roles.sentence_end[tok.token_to_id("</s>")]
