"""The report page's style sheet: inline in the page, system fonts only, nothing loaded."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root { --fg: #1a1a1a; --muted: #5a5a5a; --line: #d8d8d8; --bg2: #f5f5f3; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--fg); margin: 0 auto; max-width: 1400px; padding: 0 1.5rem 2rem; line-height: 1.45; }
header { border-bottom: 2px solid var(--fg); padding: 1rem 0 .5rem; }
h1 { margin: 0 0 .3rem; font-size: 1.6rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { margin: 1.4rem 0 .4rem; font-size: 1.05rem; }
nav a { margin-right: .8rem; font-size: .92rem; }
a { color: #0a5fa8; }
.path, code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85em;
  color: var(--muted); overflow-wrap: anywhere; }
.fname { font-weight: 600; }
.lead { font-size: 1.02rem; }
ul.headline { list-style: none; padding: 0; margin: .4rem 0 1rem; }
ul.headline li { padding: .35rem .6rem; border-left: 4px solid #0072B2; background: var(--bg2);
  margin-bottom: .3rem; }
.mname { font-weight: 600; }
.value { font-size: 1.15rem; font-weight: 700; margin: 0 .3rem;
  font-variant-numeric: tabular-nums; }
.dir { color: var(--muted); }
.badge { display: inline-block; margin-left: .6rem; padding: 0 .4rem; border-radius: 3px;
  font-size: .85rem; font-weight: 700; }
.badge.pass, td.pass { color: #0072B2; }
.badge.fail, td.fail { color: #B33F00; }
.badge.pass { background: #e3f0fa; }
.badge.fail { background: #fbe9df; }
.banner { padding: .5rem .8rem; font-weight: 600; }
.banner.pass { background: #e3f0fa; }
.banner.fail { background: #fbe9df; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .6rem; text-align: left;
  vertical-align: top; }
th { background: var(--bg2); }
td.num, td.delta { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.metric { max-width: 40rem; }
td.prov { max-width: 28rem; font-size: .8rem; overflow-wrap: anywhere; }
.explain { color: var(--muted); font-size: .85rem; }
.doc { font-size: .8rem; margin-left: .3rem; }
.tag { background: var(--bg2); border: 1px solid var(--line); border-radius: 3px;
  padding: 0 .3rem; font-size: .8rem; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; flex: 1 1 420px; max-width: 760px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: .85rem; color: var(--muted); margin-top: .3rem; }
.who { font-weight: 700; margin-bottom: .2rem; }
.gaps { color: var(--muted); font-size: .92rem; }
.skip { color: var(--muted); font-style: italic; background: var(--bg2); padding: .5rem .7rem; }
footer { margin-top: 2.5rem; border-top: 1px solid var(--line); padding-top: .6rem;
  color: var(--muted); font-size: .85rem; }
"""
