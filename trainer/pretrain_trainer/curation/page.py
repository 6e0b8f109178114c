"""The corpus report as one self-contained HTML page: SVG plots embedded as data: images, tables, examples.

Nothing is fetched when the page opens (no scripts, fonts or styles from elsewhere), so it can be mailed,
archived next to the shards, or opened offline. A few lines of script record in the page itself how many of its
images loaded (`data-images-loaded="3/3"` on <body>), which the tests read from a headless browser.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from pretrain_trainer.curation.pii import KINDS

_BAR = "#4c78a8"
_FLAG = "#e45756"
_FONT = "font-family='sans-serif' font-size='12'"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return f'<img src="data:image/svg+xml;base64,{data}" alt="{_esc(alt)}">'


def hbar_svg(items: Sequence[tuple[str, float, str]], color: str = _BAR, width: int = 620) -> str:
    """Horizontal bars: (label, value in [0, 1] relative to the longest bar, text after the bar)."""
    row, label_w, text_w = 22, 200, 110
    height = row * max(1, len(items)) + 10
    top = max((v for _, v, _ in items), default=0) or 1
    span = width - label_w - text_w
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' {_FONT}>"]
    for i, (label, value, text) in enumerate(items):
        y = 5 + i * row
        w = max(1.0, span * value / top) if value else 0
        parts.append(f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end'>{_esc(label)}</text>")
        parts.append(f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row - 6}' fill='{color}'/>")
        parts.append(f"<text x='{label_w + w + 4:.1f}' y='{y + 15}'>{_esc(text)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(edges: Sequence[int], counts: Sequence[int], width: int = 560, height: int = 220) -> str:
    """Columns for the length histogram; empty leading and trailing bins are left out."""
    used = [i for i, c in enumerate(counts) if c]
    lo, hi = (used[0], used[-1]) if used else (0, 0)
    bins = list(range(lo, hi + 1))
    top = max(counts) or 1
    col = (width - 50) / max(1, len(bins))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' {_FONT}>"]
    base = height - 40
    for j, i in enumerate(bins):
        h = (base - 10) * counts[i] / top
        x = 40 + j * col
        parts.append(f"<rect x='{x + 2:.1f}' y='{base - h:.1f}' width='{col - 4:.1f}' height='{h:.1f}' fill='{_BAR}'/>")
        parts.append(f"<text x='{x + col / 2:.1f}' y='{base - h - 3:.1f}' text-anchor='middle'>{counts[i]}</text>")
        label = f"{edges[i]:,}" if edges[i] < 1024 else f"{edges[i] // 1024}k"
        parts.append(f"<text x='{x + col / 2:.1f}' y='{base + 15}' text-anchor='middle'>{label}</text>")
    parts.append(f"<text x='{width / 2:.0f}' y='{height - 5}' text-anchor='middle'>characters (bin start)</text>")
    parts.append("</svg>")
    return "".join(parts)


def _rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _examples(entries: Sequence[dict]) -> str:  # type: ignore[type-arg]
    if not entries:
        return ""
    items = "".join(
        f"<li><code>{_esc(e['source'])}</code>"
        + (f" ({_esc(e['lang'])})" if e.get("lang") else "")
        + (f" <b>{_esc(e['detail'])}</b>" if e.get("detail") else "")
        + f"<pre>{_esc(e['text'])}</pre></li>"
        for e in entries
    )
    return f"<ul class='examples'>{items}</ul>"


def _rates(report: dict) -> list[tuple[str, float, str]]:  # type: ignore[type-arg]
    total = report["documents"] or 1
    dups = report["duplicates"]
    counts = [
        ("exact duplicates", dups["exact"]["documents"]),
        ("near duplicates", dups["near"]["documents"]),
        ("mixed languages", report["mixed"]["languages"]["documents"]),
        ("mixed scripts", report["mixed"]["scripts"]["documents"]),
        ("personal data", report["pii_documents"]),
        *((f"quality: {flag}", q["documents"]) for flag, q in report["quality"].items()),
    ]
    return [(label, n / total, f"{n} ({100 * n / total:.1f}%)") for label, n in counts]


_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}
td:first-child,th:first-child{text-align:left}pre{white-space:pre-wrap;background:#f6f6f6;padding:.4em;margin:.2em 0}
.examples{font-size:90%}h2{margin-top:1.5em}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
});
"""


def render_page(report: dict, title: str = "Corpus report") -> str:  # type: ignore[type-arg]
    """The whole page for `report` (the dict written to report.json)."""
    total = report["documents"] or 1
    langs = report["languages"]
    lang_items = [(k, g["documents"] / total, f"{g['documents']} ({100 * g['share']:.1f}%)") for k, g in langs.items()]
    hist = report["overall"]["length_histogram"]
    lang_rows = [
        (
            k,
            g["documents"],
            g["characters"],
            g["words"],
            g["length"]["median"],
            g["exact_duplicates"],
            g["near_duplicates"],
            g["quality_flagged"],
            g["pii_documents"],
        )
        for k, g in [*langs.items(), ("all", report["overall"])]
    ]
    dups = report["duplicates"]
    clusters = "".join(
        f"<h3>{kind} ×{c['size']} ({_esc(', '.join(c['languages']))})</h3>"
        + _examples([{"source": m["source"], "text": m["text"]} for m in c["members"]])
        for kind in ("exact", "near")
        for c in dups[kind]["largest"]
    )
    flags = "".join(
        f"<h3>{_esc(flag)}: {q['documents']} documents</h3>{_examples(q['examples'])}"
        for flag, q in report["quality"].items()
    )
    pii = "".join(
        f"<h3>{_esc(kind)}: {report['pii'][kind]['matches']} found</h3>{_examples(report['pii'][kind]['examples'])}"
        for kind in KINDS
    )
    mixed = report["mixed"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_esc(title)}</h1>
<p>{report["documents"]} documents, {report["overall"]["characters"]:,} characters,
{report["overall"]["words"]:,} words from {len(report.get("inputs", []))} files.</p>
<h2>Length of documents</h2>{_img(histogram_svg(hist["edges"], hist["counts"]), "length histogram")}
<h2>Languages</h2>{_img(hbar_svg(lang_items), "language shares")}
{
        _rows(
            (
                "language",
                "documents",
                "characters",
                "words",
                "median length",
                "exact dup",
                "near dup",
                "flagged",
                "with PII",
            ),
            lang_rows,
        )
    }
<h2>Duplicates, mixtures, flags and personal data</h2>{_img(hbar_svg(_rates(report), _FLAG), "flag rates")}
<h2>Largest duplicate clusters</h2>
<p>{dups["exact"]["documents"]} exact copies, {dups["near"]["documents"]} near duplicates
(Jaccard ≥ {dups["near"]["threshold"]}).</p>{clusters}
<h2>Mixed languages and scripts</h2>
<h3>mixed languages: {mixed["languages"]["documents"]}</h3>{_examples(mixed["languages"]["examples"])}
<h3>mixed scripts: {mixed["scripts"]["documents"]}</h3>{_examples(mixed["scripts"]["examples"])}
<h2>Quality flags</h2>{flags or "<p>none</p>"}
<h2>Personal data (masked)</h2>{pii}
<script>{_SCRIPT}</script>
</body></html>
"""
