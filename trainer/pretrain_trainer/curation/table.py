"""The corpus report as terminal tables: per language, flags with an example each, personal data, clusters."""

from __future__ import annotations

from collections.abc import Sequence

from pretrain_trainer.curation.pii import KINDS


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[bool]) -> list[str]:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])]


def _pct(n: float, total: float) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _one_line(text: object, width: int = 70) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _language_table(report: dict) -> list[str]:  # type: ignore[type-arg]
    total = report["documents"]
    rows = []
    for lang, g in [*report["languages"].items(), ("all", report["overall"])]:
        length = g["length"]
        rows.append(
            (
                lang,
                g["documents"],
                _pct(g["documents"], total),
                f"{g['characters']:,}",
                f"{g['words']:,}",
                f"{length['p10']}/{length['median']}/{length['p90']}",
                g["exact_duplicates"],
                g["near_duplicates"],
                g["mixed_languages"] + g["mixed_scripts"],
                _pct(g["quality_flagged"], g["documents"]),
                g["pii_documents"],
            )
        )
    header = ("language", "docs", "share", "chars", "words", "len p10/50/90", "exact dup", "near dup", "mixed")
    return _table((*header, "flagged", "PII docs"), rows, (False, *[True] * 10))


def _duplicates(report: dict) -> list[str]:  # type: ignore[type-arg]
    dups = report["duplicates"]
    near = dups["near"]
    near_text = (
        f"{near['documents']} near duplicates (Jaccard ≥ {near['threshold']}) in {near['clusters']} clusters"
        if near["checked"]
        else "near duplicates not checked (--no-near-dup)"
    )
    out = [
        "",
        f"duplicates: {dups['exact']['documents']} exact copies in {dups['exact']['clusters']} clusters; {near_text}",
    ]
    for kind in ("exact", "near"):
        for cluster in dups[kind]["largest"][:5]:
            members = cluster["members"]
            out.append(f"  {kind} ×{cluster['size']}: " + ", ".join(m["source"] for m in members))
            out.append(f"      {_one_line(members[0]['text'])}")
    return out


def format_report(report: dict) -> str:  # type: ignore[type-arg]
    """A readable summary of `report` (the dict written to report.json)."""
    total = report["documents"]
    overall = report["overall"]
    out = [
        f"{total} documents, {overall['characters']:,} characters, {overall['words']:,} words, "
        f"{report['bytes'] / 1e6:.2f} MB in {report['seconds']:.1f} s "
        f"({report['documents_per_second']:,.0f} documents/s, {report['mb_per_second']:.2f} MB/s)",
        "",
    ]
    out += _language_table(report)
    out += ["", "quality flags (documents; a document can have several)"]
    flag_rows = [
        (
            flag,
            q["documents"],
            _pct(q["documents"], total),
            _one_line(q["examples"][0]["text"]) if q["examples"] else "",
        )
        for flag, q in report["quality"].items()
    ]
    out += (
        _table(("flag", "docs", "share", "example"), flag_rows, (False, True, True, False)) if flag_rows else ["none"]
    )
    out += ["", "personal data (masked)"]
    pii_rows = [
        (kind, report["pii"][kind]["matches"], ", ".join(str(e["detail"]) for e in report["pii"][kind]["examples"]))
        for kind in KINDS
    ]
    out += _table(("kind", "found", "examples"), pii_rows, (False, True, False))
    out += _duplicates(report)
    mixed = report["mixed"]
    out += [
        "",
        f"mixed: {mixed['languages']['documents']} documents mix languages "
        f"({_pct(mixed['languages']['documents'], total)}), {mixed['scripts']['documents']} mix scripts "
        f"({_pct(mixed['scripts']['documents'], total)})",
    ]
    return "\n".join(out)
