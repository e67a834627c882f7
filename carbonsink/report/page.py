"""The atlas page: one self-contained HTML file (figures embedded as PNG data URIs, inline CSS and
script, no request to anything outside the file) with links to each figure's PNG and SVG and to
the tables next to it, and the provenance of everything shown.

The inline script records, once the page has loaded, every image's natural size and any error
into ``#atlas-status`` (``data-images``, ``data-errors``), so a headless browser can check that
the page renders (``chromium --headless --dump-dom``).
"""
from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field

import pandas as pd

_SECRET = re.compile(r"(secret|passw|token|credential|access_key|api_key|^key$|storage_options|"
                     r"client_kwargs|session)", re.IGNORECASE)


def scrub(obj):
    """``obj`` without anything that could be a credential: keys that name one are dropped and
    user:password@ is cut out of URLs (records never hold secrets; this keeps it so)."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if not _SECRET.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return re.sub(r"(\w+://)[^/@\s]+@", r"\1", obj)
    return obj


@dataclass
class FigureEntry:
    id: str
    section: str
    title: str
    caption: str
    png: str                 # relative to the page
    svg: str
    png_bytes: bytes = b""
    width_px: int = 0
    height_px: int = 0
    meta: dict = field(default_factory=dict)


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list = field(default_factory=list)    # FigureEntry | ("table", title, html) | ("html", s)


def esc(s) -> str:
    return html.escape(str(s), quote=True)


def table_html(df: pd.DataFrame, *, floatfmt: str | None = None,
               max_rows: int | None = None) -> str:
    """An HTML table (escaped); floats with 4 significant digits, large ones as integers."""
    if max_rows is not None and len(df) > max_rows:
        df = df.head(max_rows)

    def fmt(v):
        if isinstance(v, float):
            if pd.isna(v):
                return ""
            if floatfmt:
                return floatfmt.format(v)
            return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
        return v
    return df.map(fmt).to_html(index=False, border=0, classes="data", escape=True,
                               na_rep="")


def kv_html(d: dict) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_short(v))}</td></tr>" for k, v in d.items())
    return f'<table class="kv">{rows}</table>'


def _short(v) -> str:
    if isinstance(v, (dict, list)):
        s = json.dumps(v, ensure_ascii=False, default=str)
    else:
        s = str(v)
    return s if len(s) <= 300 else s[:297] + "…"


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;
color:#1b1b1b;background:#fafafa;line-height:1.45}
header{background:#12355b;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:1.6em} header p{margin:2px 0;opacity:.9}
main{max-width:1180px;margin:0 auto;padding:10px 24px 40px}
nav{background:#fff;border:1px solid #ddd;padding:8px 14px;margin:14px 0;font-size:.92em}
nav a{margin-right:14px;color:#12355b}
.warning{background:#fff3cd;border:3px solid #d39e00;color:#5c4400;padding:14px 18px;
margin:16px 0;font-size:1.08em;border-radius:4px}
.warning strong{font-size:1.15em}
section{background:#fff;border:1px solid #ddd;padding:6px 20px 16px;margin:18px 0}
section h2{border-bottom:2px solid #12355b;padding-bottom:4px;color:#12355b}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px 22px}
figure{margin:12px 0;padding:0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333;margin-top:4px}
figcaption a{margin-left:8px}
table.data,table.kv{border-collapse:collapse;font-size:.84em;margin:8px 0 14px}
table.data th,table.data td,table.kv th,table.kv td{border:1px solid #ccc;padding:2px 7px;
text-align:right} table.data th{background:#eef2f7} table.kv th{text-align:left;background:#f3f3f3}
table.kv td{text-align:left;font-family:monospace;font-size:.95em;word-break:break-all}
details{margin:6px 0 12px} summary{cursor:pointer;color:#12355b}
pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:.82em}
footer{font-size:.85em;color:#555;text-align:center;padding:20px}
"""

_SCRIPT = """
(function(){
  var errors=[];
  window.addEventListener('error',function(e){
    var t=e.target||{};
    errors.push(t.tagName?('load failed: '+t.tagName+' '+(t.getAttribute('data-figure')||'')):
      String(e.message||e));
  },true);
  window.addEventListener('load',function(){
    var out=[];
    for(var i=0;i<document.images.length;i++){
      var im=document.images[i];
      out.push({figure:im.getAttribute('data-figure'),width:im.naturalWidth,
                height:im.naturalHeight,complete:im.complete});
    }
    var s=document.getElementById('atlas-status');
    s.setAttribute('data-images',JSON.stringify(out));
    s.setAttribute('data-errors',JSON.stringify(errors));
    s.setAttribute('data-loaded','1');
  });
})();
"""


def figure_html(f: FigureEntry) -> str:
    data = base64.b64encode(f.png_bytes).decode()
    return (f'<figure id="{esc(f.id)}"><img data-figure="{esc(f.id)}" alt="{esc(f.title)}" '
            f'width="{f.width_px}" height="{f.height_px}" '
            f'src="data:image/png;base64,{data}">'
            f'<figcaption><strong>{esc(f.title)}.</strong> {esc(f.caption)}'
            f'<a href="{esc(f.png)}">PNG</a><a href="{esc(f.svg)}">SVG</a></figcaption></figure>')


def render(*, title: str, subtitle: list[str], warnings: list[str], sections: list[Section],
           footer: str) -> str:
    """The whole page."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title><style>{_CSS}</style>",
             f"<script>{_SCRIPT}</script></head><body>",
             f"<header><h1>{esc(title)}</h1>",
             *[f"<p>{esc(s)}</p>" for s in subtitle], "</header><main>"]
    for w in warnings:
        parts.append(f'<div class="warning" role="alert">{w}</div>')
    parts.append("<nav>" + "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>'
                                   for s in sections) + "</nav>")
    for s in sections:
        parts.append(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>')
        if s.intro:
            parts.append(f"<p>{s.intro}</p>")
        in_grid = False
        for b in s.blocks:
            if isinstance(b, FigureEntry) != in_grid:
                parts.append('<div class="figs">' if not in_grid else "</div>")
                in_grid = not in_grid
            if isinstance(b, FigureEntry):
                parts.append(figure_html(b))
            elif b[0] == "table":
                _, caption, body, open_ = (*b, True)[:4]
                tag = "<details open>" if open_ else "<details>"
                parts.append(f"{tag}<summary>{esc(caption)}</summary>{body}</details>")
            else:
                parts.append(b[1])
        if in_grid:
            parts.append("</div>")
        parts.append("</section>")
    parts.append(f"</main><footer>{footer}</footer>")
    parts.append('<div id="atlas-status" hidden data-loaded="0"></div></body></html>')
    return "\n".join(parts)
