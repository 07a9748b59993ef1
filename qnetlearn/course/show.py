"""Small displays for lessons: a table that renders as HTML in JupyterLab and as text elsewhere."""
from __future__ import annotations

import html
from typing import Any, Sequence

__all__ = ["Table", "table"]


class Table:
    """Rows of values under headers; ``highlight`` marks rows (by index) in bold."""

    def __init__(self, rows: Sequence[Sequence[Any]], headers: Sequence[str],
                 title: str = "", highlight: Sequence[int] = ()) -> None:
        self.rows = [list(r) for r in rows]
        self.headers = list(headers)
        self.title = title
        self.highlight = set(highlight)

    def column(self, name: str) -> list[Any]:
        k = self.headers.index(name)
        return [r[k] for r in self.rows]

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>"
                       for h in self.headers)
        body = []
        for i, r in enumerate(self.rows):
            style = " style='font-weight:bold;background:#fff3cd'" if i in self.highlight else ""
            cells = "".join(f"<td style='text-align:left;font-family:monospace'>"
                            f"{html.escape(str(v))}</td>" for v in r)
            body.append(f"<tr{style}>{cells}</tr>")
        cap = f"<caption style='text-align:left'><b>{html.escape(self.title)}</b></caption>" \
            if self.title else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

    def __repr__(self) -> str:
        cols = [self.headers] + [[str(v) for v in r] for r in self.rows]
        widths = [max(len(str(c[k])) for c in cols) for k in range(len(self.headers))]
        lines = [self.title] if self.title else []
        for n, c in enumerate(cols):
            mark = "*" if n - 1 in self.highlight else " "
            lines.append(mark + "  ".join(str(v).ljust(w) for v, w in zip(c, widths)).rstrip())
            if n == 0:
                lines.append(" " + "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], title: str = "",
          highlight: Sequence[int] = ()) -> Table:
    return Table(rows, headers, title, highlight)
