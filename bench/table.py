"""One results table for the whole suite, as fixed-width text or Markdown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    """One measured case. ``ratio`` is always against a baseline from the same run,
    named by ``ratio_of``; ``cpu_ratio`` is CPU per judgment against the same baseline."""

    section: str
    case: str
    n: int
    rate: float | None  # judgments (or rows) per second
    ratio: float | None
    ratio_of: str
    cpu_ms: float | None  # client CPU milliseconds per judgment
    cpu_ratio: float | None
    rss_mb: float | None  # client peak RSS
    note: str = ""


HEADER = ("section", "case", "n", "per s", "ratio", "ratio of", "CPU ms/j", "CPU ratio",
          "peak RSS MB", "notes")


def _fmt(value: float | int | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _cells(r: Row) -> list[str]:
    return [r.section, r.case, str(r.n), _fmt(r.rate, ".1f"), _fmt(r.ratio, ".3f"),
            r.ratio_of, _fmt(r.cpu_ms, ".2f"), _fmt(r.cpu_ratio, ".2f"), _fmt(r.rss_mb, ".0f"),
            r.note]


def render(rows: list[Row], title: str, markdown: bool = False) -> str:
    """The table with a title line."""
    body = [list(HEADER)] + [_cells(r) for r in rows]
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(body[0]) + " |",
                 "|" + "|".join("---" for _ in HEADER) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in body) for i in range(len(HEADER) - 1)]
    out = [title]
    for k, row in enumerate(body):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if k == 0:
            out.append("-" * (sum(widths) + 2 * len(widths) + 5))
    return "\n".join(out)
