"""The README's PretrainJob reference is generated from the typed spec and must be current."""

from __future__ import annotations

import dataclasses

from pretrain_operator import reference
from pretrain_trainer.config import PretrainJobSpec


def test_readme_reference_matches_the_schema() -> None:
    text = reference.README.read_text()
    assert reference.updated(text) == text, (
        "README reference is stale: run `python -m pretrain_operator.reference --write`"
    )


def test_reference_lists_every_field_with_its_default_and_rules() -> None:
    table = reference.render()
    assert "| `spec.training.microBatchSize` | integer | `8` | ≥ 1 |" in table
    assert "| `spec.tokenizer.uri` | string | **required** |" in table
    assert "`clm` \\| `mlm`" in table
    assert "(changeable on a running job)" in table.split("`spec.workers.replicas`")[1].split("\n")[0]
    top_level = [f.name for f in dataclasses.fields(PretrainJobSpec)]
    assert len(reference.rows()) > len(top_level)
