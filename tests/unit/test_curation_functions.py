"""The curation functions on planted cases: language, near duplicates, quality signals, personal data."""

from __future__ import annotations

import random

import pytest

from pretrain_trainer.bundled_corpus import load_bundled_documents
from pretrain_trainer.curation import pii
from pretrain_trainer.curation.langid import CODE, UNDETERMINED, identify
from pretrain_trainer.curation.neardup import NearDuplicateIndex, shingles
from pretrain_trainer.curation.quality import QualityThresholds, signals

NATURAL = ("en", "sv", "de", "fr", "el", "ru", "zh", "ja")


@pytest.fixture(scope="module")
def bundled():
    return load_bundled_documents()


def _expected(doc: dict[str, str]) -> set[str]:
    # Emoji documents are Swedish or English text with emoji (or emoji alone); code is recognised as code.
    return {"sv", "en", UNDETERMINED} if doc["lang"] == "emoji" else {doc["lang"]}


def test_languages_of_the_bundled_corpus_are_identified_for_at_least_95_percent(bundled):
    wrong = [(d["lang"], identify(d["text"]).lang, d["text"][:40]) for d in bundled]
    wrong = [w for w in wrong if w[1] not in _expected({"lang": w[0]})]
    assert 1 - len(wrong) / len(bundled) >= 0.95, wrong
    per_language = {lang: [d for d in bundled if d["lang"] == lang] for lang in (*NATURAL, "code")}
    for lang, docs in per_language.items():
        right = sum(identify(d["text"]).lang == lang for d in docs)
        assert right / len(docs) >= 0.9, (lang, right, len(docs))


def test_a_document_joining_two_languages_is_flagged_as_mixed_and_a_plain_one_is_not(bundled):
    en = next(d["text"] for d in bundled if d["lang"] == "en" and len(d["text"]) > 400)
    ru = next(d["text"] for d in bundled if d["lang"] == "ru" and len(d["text"]) > 400)
    sv = next(d["text"] for d in bundled if d["lang"] == "sv" and len(d["text"]) > 400)
    both = identify(en + "\n\n" + sv)
    assert both.mixed_languages and set(both.paragraph_languages) == {"en", "sv"}
    assert not both.mixed_scripts
    scripts = identify(en + "\n\n" + ru)
    assert (
        scripts.mixed_scripts
        and scripts.mixed_languages
        and scripts.scripts[:2]
        in (
            ("Latin", "Cyrillic"),
            ("Cyrillic", "Latin"),
        )
    )
    assert not identify(en).mixed_languages and not identify(en).mixed_scripts
    # Japanese mixes kanji and kana by nature: one writing system, not a mixture.
    ja = next(d["text"] for d in bundled if d["lang"] == "ja" and len(d["text"]) > 200)
    assert identify(ja).lang == "ja" and not identify(ja).mixed_scripts


def test_text_without_letters_is_undetermined_and_source_code_is_code():
    assert identify("🇸🇪❤️ 123 !!!").lang == UNDETERMINED
    assert identify("def f(x):\n    return x + 1\n\nprint(f(2))\n").lang == CODE


def _edit(text: str, rng: random.Random, edits: int) -> str:
    """Small edits: substitute, delete or insert a word, or make a one-letter typo."""
    words = text.split(" ")
    for _ in range(edits):
        i = rng.randrange(len(words))
        kind = rng.randrange(4)
        if kind == 0:
            words[i] = rng.choice(["very", "quite", "also", "then", "still"])
        elif kind == 1 and len(words) > 10:
            del words[i]
        elif kind == 2:
            words.insert(i, rng.choice(["indeed", "really", "however"]))
        else:
            w = words[i]
            words[i] = w[:-1] + "x" if len(w) > 1 else w + "x"
    return " ".join(words)


def _distinct_documents(bundled) -> list[str]:
    """Bundled natural-language documents of 60+ words, exact duplicates removed."""
    seen: dict[str, None] = {}
    for d in bundled:
        if d["lang"] in ("en", "sv", "de", "fr", "el", "ru") and len(d["text"].split()) >= 60:
            seen.setdefault(d["text"])
    return list(seen)


def test_near_duplicates_with_small_edits_are_found_with_recall_at_least_90_percent(bundled):
    rng = random.Random(7)
    originals = _distinct_documents(bundled)
    index = NearDuplicateIndex()
    for i, text in enumerate(originals):
        assert index.add(("orig", i), text) is None
    found = 0
    for i, text in enumerate(originals):
        copy = _edit(text, rng, edits=max(1, len(text.split()) // 50))
        hit = index.add(("copy", i), copy)
        found += hit is not None and hit[0] == ("orig", i)
    assert found / len(originals) >= 0.9, (found, len(originals))


def test_distinct_documents_form_no_near_duplicate_clusters(bundled):
    index = NearDuplicateIndex()
    for i, text in enumerate(_distinct_documents(bundled)):
        index.add(i, text, keep_if_duplicate=True)
    assert index.clusters() == []


def test_near_duplicate_clusters_group_every_copy_under_the_first_and_a_filter_keeps_only_the_first(bundled):
    text = _distinct_documents(bundled)[0]
    rng = random.Random(1)
    copies = [text] + [_edit(text, rng, 1) for _ in range(4)]
    report = NearDuplicateIndex()
    for i, c in enumerate(copies):
        report.add(i, c, keep_if_duplicate=True)
    assert report.clusters() == [[0, 1, 2, 3, 4]]
    dropping = NearDuplicateIndex()
    answers = [dropping.add(i, c) for i, c in enumerate(copies)]
    assert answers[0] is None and all(a is not None and a[0] == 0 for a in answers[1:])
    assert dropping.indexed == 1


def test_chinese_text_shingles_by_character_and_short_text_has_no_shingles():
    assert len(shingles("小明在港口附近带回了厨房的桌子")) == 11
    assert shingles("two words") == []
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=1.5)


def test_gopher_signals_flag_repetition_bullets_ellipses_symbols_and_missing_stop_words():
    t = QualityThresholds()
    prose = (
        "The committee met on Tuesday to discuss the budget for the coming year. After a long debate, the "
        "members agreed to raise the funding for the library and to postpone the decision on the new bridge. "
        "The chair thanked everyone for their patience and closed the meeting shortly before six in the evening."
    )
    assert t.flags(signals(prose, "en"), "en") == []
    repeated = "\n".join(["Buy cheap watches now at our store today"] * 12)
    assert {"dup_lines", "top_ngram", "dup_ngrams"} <= set(t.flags(signals(repeated, "en"), "en"))
    bullets = "\n".join(f"- item number {i} of the list with words here and there" for i in range(60))
    assert "bullet_lines" in t.flags(signals(bullets, "en"), "en")
    teaser = "\n".join(f"Read the full story about topic {i} and the results..." for i in range(60))
    assert "ellipsis_lines" in t.flags(signals(teaser, "en"), "en")
    tags = " ".join(f"#tag{i} word" for i in range(60))
    assert "symbol_word_ratio" in t.flags(signals(tags, "en"), "en")
    word_salad = " ".join(f"zxq{i} vbn{i} mlk{i}" for i in range(30))
    assert "stop_words" in t.flags(signals(word_salad, "en"), "en")
    shouting = prose.upper()
    assert "upper_case" in t.flags(signals(shouting, "en"), "en")
    # Source code is not judged as prose.
    code = "\n".join(f"x{i} = compute(x{i - 1}) # step {i}" for i in range(1, 60))
    assert not {"stop_words", "symbol_word_ratio", "mean_word_length"} & set(t.flags(signals(code, CODE), CODE))


@pytest.mark.parametrize(
    "broken",
    [
        "FranÃ§ois a rÃ©parÃ© la table de la cuisine.",  # UTF-8 read as Latin-1
        "It\u00e2\u20ac\u2122s a nice day, isn\u00e2\u20ac\u2122t it?",  # ’ read as Windows-1252
        "ÐŸÑ€Ð¸Ð²ÐµÑ‚, ÐºÐ°Ðº Ð´ÐµÐ»Ð°?",  # Russian read as Windows-1252
        "Replacement \ufffd characters \ufffd from a lossy decoder",
        "A control\x07character and a form\x0cfeed",
    ],
)
def test_mojibake_replacement_and_control_characters_are_flagged_as_broken_encoding(broken):
    s = signals(broken, "en")
    assert s.broken_chars > 0
    assert "broken_encoding" in QualityThresholds().flags(s, "en")


def test_clean_text_in_many_scripts_has_no_broken_characters(bundled):
    broken = [d["id"] for d in bundled if signals(d["text"], d["lang"]).broken_chars]
    assert broken == []


def test_quality_thresholds_parse_from_the_command_line_and_reject_unknown_names():
    t = QualityThresholds.parse("min_words=20, max_upper_share=0.3")
    assert t.min_words == 20 and t.max_upper_share == 0.3 and t.max_dup_lines == 0.3
    with pytest.raises(ValueError, match="min_wordz"):
        QualityThresholds.parse("min_wordz=3")
    with pytest.raises(ValueError, match="needs a number"):
        QualityThresholds.parse("min_words=many")


PLANTED = {
    "email": ["anna.berg@example.se", "j.doe+news@mail.example.co.uk", "x_y-z@sub.domain.org"],
    "phone": ["+46 8 123 45 67", "+1 (555) 010-9999", "(555) 010-9999", "08-123 45 67", "555-010-9999"],
    "credit_card": ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"],
    "iban": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "SE4550000000058398257466"],
    "ip_address": ["192.168.1.20", "10.0.0.1", "2001:db8::8a2e:370:7334"],
}
NOT_PII = [
    "1999-02-27",
    "2019",
    "70 338 personer",
    "6 221 lådor",
    "1 234,50 kr",
    "version 1.2.3.4.5",
    "10:30:00",
    "ISBN 978-3-16-148410-0",
    "4111 1111 1111 1112",  # fails Luhn
    "1234 5678 9012 3456",  # fails Luhn and no card prefix
    "GB82 WEST 1234 5698 7654 33",  # fails mod-97
    "999.1.1.1",
    "Prices rose by 43 % in a year (figures from 1994).",
    "The library, built in 1964, holds 157,566 books.",
]


def test_every_planted_personal_datum_is_found_with_its_kind():
    for kind, values in PLANTED.items():
        for value in values:
            text = f"Kontakt: {value}, tack."
            found = pii.find(text)
            assert [(m.kind, m.value) for m in found] == [(kind, value)], (kind, value, found)


def test_valid_looking_non_personal_numbers_are_left_alone(bundled):
    for text in NOT_PII:
        assert pii.find(text) == [], text
    assert [d["id"] for d in bundled if d["lang"] != "code" and pii.find(d["text"])] == []


def test_redaction_replaces_each_kind_with_its_placeholder_and_masks_reveal_little():
    text = "Mail anna.berg@example.se, card 4111 1111 1111 1111, host 192.168.1.20, tel +46 8 123 45 67."
    assert pii.redact(text) == "Mail <EMAIL>, card <CREDIT_CARD>, host <IP_ADDRESS>, tel <PHONE>."
    assert pii.mask("email", "anna.berg@example.se") == "a***@example.se"
    assert pii.mask("credit_card", "4111 1111 1111 1111") == "**** **** **** 1111"
    assert pii.mask("ip_address", "192.168.1.20") == "192.168.*.*"
    assert "123" not in pii.mask("phone", "+46 8 123 45 67")
