from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.data.readers import Document
from pretrain_trainer.tokenizer.audit import audit_tokenizer, dominant_script, format_report
from pretrain_trainer.tokenizer.train import TokenizerTrainingSpec
from tests.support.data import trained


def _docs():
    return [Document(d["text"], d["id"], d["lang"]) for d in load_bundled_documents()]


def test_byte_level_bpe_is_lossless_on_every_language_of_the_bundled_corpus():
    report = audit_tokenizer(trained(TokenizerTrainingSpec(model="bpe", vocab_size=2000)), _docs())
    assert report.total.roundtrip == 1.0
    assert report.total.unknown_tokens == 0
    assert {"sv", "de", "fr", "el", "ru", "zh", "ja", "code", "emoji"} <= set(report.groups)
    assert all(g.roundtrip == 1.0 for g in report.groups.values())
    assert report.findings == []
    assert report.passes(0.999)
    assert 0.3 < report.vocab_utilisation <= 1.0


def test_uncased_accent_stripping_wordpiece_is_flagged_with_what_was_lost():
    spec = TokenizerTrainingSpec(
        model="wordpiece", vocab_size=2000, objective="mlm", lowercase=True, strip_accents=True
    )
    report = audit_tokenizer(trained(spec), _docs())
    assert not report.passes(0.99, ignore_whitespace=True)
    assert report.groups["sv"].content_roundtrip < 0.5
    accents = next(f for f in report.findings if f.startswith("ACCENTS STRIPPED"))
    # The message shows the Swedish letters and what they became.
    for lost in ("'å'→'a'", "'ä'→'a'", "'ö'→'o'"):
        assert lost in accents
    assert any(f.startswith("LOWER-CASED") for f in report.findings)
    text = format_report(report, 0.99, ignore_whitespace=True)
    assert "FAIL" in text and "ACCENTS STRIPPED" in text


def test_lowercasing_wordpiece_that_keeps_accents_is_not_accused_of_stripping_them():
    spec = TokenizerTrainingSpec(model="wordpiece", vocab_size=2000, objective="mlm", lowercase=True)
    report = audit_tokenizer(trained(spec), _docs())
    assert not any(f.startswith("ACCENTS STRIPPED") for f in report.findings)
    assert any(f.startswith("LOWER-CASED") for f in report.findings)


def test_unknown_tokens_are_counted_and_reported():
    tok = trained(TokenizerTrainingSpec(model="wordpiece", vocab_size=2000, objective="mlm"))
    report = audit_tokenizer(tok, [Document("Hello ☃ snowman ⛄ and ꙮ", "x")])
    assert report.total.unknown_tokens >= 1
    assert any(f.startswith("UNKNOWN TOKENS") for f in report.findings)


def test_fertility_is_not_reported_for_scripts_without_spaces():
    report = audit_tokenizer(trained(TokenizerTrainingSpec(model="bpe", vocab_size=2000)), _docs())
    assert report.groups["zh"].tokens_per_word is None
    assert report.groups["sv"].tokens_per_word > 1.0
    assert report.groups["sv"].chars_per_token > 2.0


def test_dominant_script_groups_unlabelled_documents():
    assert dominant_script("Жёлтый дом") == "CYRILLIC"
    assert dominant_script("Åsa och Örebro") == "LATIN"
    assert dominant_script("中文文本") == "CJK"
    assert dominant_script("123 !!") == "OTHER"
