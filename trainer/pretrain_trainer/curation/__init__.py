"""Know what is in a corpus before training on it: language, duplicates, quality signals and personal data.

The same functions serve `pretrainjob corpus report` (look) and the filters of `pretrainjob prepare` (act),
so what the report flags is exactly what a filter with the same settings would drop or change.
"""
