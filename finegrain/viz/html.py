"""A self-contained HTML page with its pictures also written as PNG files beside it.

Each picture is embedded as a base64 ``data:`` URI, so the single ``index.html`` can be mailed or
attached to an issue and still shows everything; each is also written as ``<name>.png`` next to
the page and linked from the picture, for slides and papers.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from finegrain.viz.png import to_png

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:24px auto;
padding:0 16px;color:#1f2328;line-height:1.45}
h1{margin-bottom:4px} h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:36px}
.muted{color:#656d76} img{max-width:100%;height:auto;border:1px solid #d0d7de}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
td,th{border:1px solid #d0d7de;padding:3px 9px;text-align:left} th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#2f81f7;vertical-align:middle}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px;max-height:480px}
figure{margin:12px 0} figcaption{color:#656d76;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px}
"""


def esc(value) -> str:
    return html.escape(str(value))


class HtmlPage:
    """Collects sections, then writes ``index.html`` and the PNGs into ``out_dir``."""

    def __init__(self, title: str, out_dir: Path):
        self.title = title
        self.out_dir = Path(out_dir)
        self.parts: list[str] = []
        self.pngs: list[str] = []

    def heading(self, text: str, note: str = "") -> None:
        self.parts.append(f"<h2 id='{esc(text.lower().replace(' ', '-'))}'>{esc(text)}</h2>")
        if note:
            self.note(note)

    def note(self, text: str) -> None:
        self.parts.append(f"<p class='muted'>{esc(text)}</p>")

    def cards(self, items: dict[str, str]) -> None:
        """Big numbers a reader looks for first (test top-1, ...)."""
        cells = "".join(f"<div class='card'><span class='muted'>{esc(k)}</span><b>{esc(v)}</b></div>"
                        for k, v in items.items())
        self.parts.append(f"<div class='cards'>{cells}</div>")

    def picture(self, name: str, picture, caption: str = "") -> str:
        """Write ``name``.png beside the page and embed it; returns the file name."""
        data = to_png(picture)
        file_name = f"{name}.png"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / file_name).write_bytes(data)
        self.pngs.append(file_name)
        encoded = base64.b64encode(data).decode("ascii")
        caption_html = f"<figcaption>{esc(caption)} (<a href='{file_name}'>{file_name}</a>)</figcaption>"
        self.parts.append(f"<figure><a href='{file_name}'><img alt='{esc(name)}' "
                          f"src='data:image/png;base64,{encoded}'></a>{caption_html}</figure>")
        return file_name

    def table(self, rows: list[dict], bars: dict[str, float] | None = None) -> None:
        """Rows of dicts with the same keys; ``bars`` names numeric columns drawn as bars of that maximum."""
        if not rows:
            return
        bars = bars or {}
        head = "".join(f"<th>{esc(k)}</th>" for k in rows[0])
        body = []
        for row in rows:
            cells = []
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    text = f"{value:.2f}" if isinstance(value, float) else str(value)
                    bar = ""
                    if key in bars and bars[key] > 0:
                        bar = f"<span class='bar' style='width:{max(0.0, 80 * value / bars[key]):.0f}px'></span> "
                    cells.append(f"<td class='num'>{bar}{esc(text)}</td>")
                else:
                    cells.append(f"<td>{esc(value)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def preformatted(self, text: str) -> None:
        self.parts.append(f"<pre>{esc(text)}</pre>")

    def write(self, file_name: str = "index.html") -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(self.title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{esc(self.title)}</h1>{''.join(self.parts)}</body></html>")
        path = self.out_dir / file_name
        path.write_text(page, encoding="utf-8")
        return path
