"""A single-file, offline HTML report of a run, rendered from the JSON result document.

Inline CSS, a little inline JavaScript (filtering; the page works without it), inline SVG
charts and no external resource of any kind, so the file can be archived as a CI artifact and
opened anywhere. Sections: totals, the conformance matrix (RFC 9669 group, seed topic and cpu
version × target; a cell click filters the case list), failures with their first differing
state, fuzz findings, campaign trends, ISA opcode coverage per target, and every case with its
program in both assembly dialects, its expectation's provenance and, per target, the verdict,
the first difference, the divergence entry, native code and the final state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from reference_vm.isa import Group

from .document import (
    FAILED_VERDICTS,
    TREND_FIELDS,
    CaseGroup,
    case_id,
    cases,
    cell_counts,
    cell_status,
    cell_text,
    coverage,
    coverage_totals,
    cpu_of,
    describe_expected,
    disassembly,
    findings,
    first_difference,
    groups_of,
    is_program_hex,
    matrix,
    native_code,
    primary_groups,
    provenance_text,
    replay_command,
    state_lines,
    targets,
    topic,
    trends,
)
from .svg import line_chart

_COLUMNS = ("pass", "fail", "error", "skip", "xfail", "xpass")
_TREND_TITLES = {"execs_per_s": ("Executions per second", "execs/s"), "coverage": ("Coverage", ""),
                 "findings": ("Findings", "")}

CSS = """
:root { --pass: #1a7f37; --fail: #cf222e; --skip: #6e7781; --xfail: #9a6700; --bg: #ffffff;
  --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1200px; padding: 0 16px 48px; font: 14px/1.45 system-ui, sans-serif;
  color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 20px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
nav { position: sticky; top: 0; background: var(--bg); padding: 6px 0; border-bottom: 1px solid var(--line);
  z-index: 1; }
nav a { margin-right: 14px; }
a { color: #0969da; text-decoration: none; }
a:hover { text-decoration: underline; }
.muted { color: var(--muted); }
.summary { font-size: 16px; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.cell { cursor: pointer; white-space: nowrap; }
td.cell.pass { background: #dafbe1; } td.cell.fail { background: #ffebe9; font-weight: 600; }
td.cell.skip { background: #eaeef2; } td.cell.xfail { background: #fff8c5; }
td.cell.empty { color: var(--muted); }
td.cov0 { color: var(--muted); } td.covbad { background: #ffebe9; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 12px; font-weight: 600;
  color: #fff; margin-right: 4px; }
.b-PASS { background: var(--pass); } .b-FAIL, .b-ERROR, .b-XPASS { background: var(--fail); }
.b-SKIP { background: var(--skip); } .b-XFAIL { background: var(--xfail); }
pre { background: var(--soft); border: 1px solid var(--line); padding: 6px 8px; margin: 4px 0;
  overflow-x: auto; font: 12px/1.4 ui-monospace, monospace; }
.programs { display: flex; gap: 12px; flex-wrap: wrap; }
.programs > div { flex: 1 1 320px; min-width: 0; }
.failure { border-left: 4px solid var(--fail); padding: 2px 12px; margin: 10px 0; background: #fffafa; }
details.case { border: 1px solid var(--line); border-radius: 6px; margin: 4px 0; padding: 0 10px; }
details.case[open] { padding-bottom: 8px; }
details.case > summary { cursor: pointer; padding: 5px 0; }
details.case.bad { border-color: var(--fail); }
.result { border-top: 1px dashed var(--line); margin-top: 8px; padding-top: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
.controls { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin: 8px 0; }
.controls input[type=search] { width: 280px; padding: 3px 6px; }
#cell-filter:empty { display: none; }
.hidden { display: none; }
.charts { display: flex; flex-wrap: wrap; }
svg.chart { border: 1px solid var(--line); background: #fff; margin: 4px 12px 4px 0; }
svg .title { font: 600 13px system-ui, sans-serif; fill: var(--fg); }
svg .tick { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg .grid { stroke: #eaeef2; } svg .axis { stroke: var(--muted); }
svg .line { fill: none; stroke: #0969da; stroke-width: 2; } svg .dot { fill: #0969da; }
"""

JS = """
(function () {
  var cases = Array.prototype.slice.call(document.querySelectorAll('details.case'));
  var text = document.getElementById('filter');
  var verdict = document.getElementById('verdict-filter');
  var shown = document.getElementById('shown');
  var cellInfo = document.getElementById('cell-filter');
  var cell = null;
  function matches(el) {
    var q = text.value.trim().toLowerCase();
    if (q && el.getAttribute('data-search').indexOf(q) < 0) return false;
    var verdicts = el.getAttribute('data-verdicts').split(' ');
    var v = verdict.value;
    if (v === 'bad' && !el.classList.contains('bad')) return false;
    if (v !== 'all' && v !== 'bad' && !verdicts.some(function (x) { return x.split(':')[1] === v; })) {
      return false;
    }
    if (cell) {
      var attr = el.getAttribute('data-' + cell.kind);
      var values = cell.kind === 'group' ? attr.split(' ') : [attr];
      if (values.indexOf(cell.value) < 0) return false;
      if (!verdicts.some(function (x) { return x.split(':')[0] === cell.target; })) return false;
    }
    return true;
  }
  function update() {
    var n = 0;
    cases.forEach(function (el) {
      var ok = matches(el);
      el.classList.toggle('hidden', !ok);
      if (ok) n++;
    });
    shown.textContent = n + ' of ' + cases.length + ' cases shown';
    cellInfo.textContent = '';
    if (cell) {
      var label = cell.kind + ' = ' + cell.value + ' on ' + cell.target + ' ';
      cellInfo.appendChild(document.createTextNode(label));
      var clear = document.createElement('button');
      clear.textContent = 'clear';
      clear.onclick = function () { cell = null; update(); };
      cellInfo.appendChild(clear);
    }
  }
  function openHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (!el) return;
    for (var p = el; p; p = p.parentElement) { if (p.tagName === 'DETAILS') p.open = true; }
    if (el.classList.contains('hidden')) { el.classList.remove('hidden'); }
    el.scrollIntoView();
  }
  text.addEventListener('input', update);
  verdict.addEventListener('change', update);
  Array.prototype.forEach.call(document.querySelectorAll('td.cell[data-kind]'), function (td) {
    td.addEventListener('click', function () {
      cell = {kind: td.getAttribute('data-kind'), value: td.getAttribute('data-value'),
              target: td.getAttribute('data-target')};
      update();
      document.getElementById('cases').scrollIntoView();
    });
  });
  window.addEventListener('hashchange', openHash);
  update();
  openHash();
  document.body.setAttribute('data-js', 'ready');
})();
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _badge(verdict: str) -> str:
    return f'<span class="badge b-{_e(verdict)}">{_e(verdict)}</span>'


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _result_anchor(case_anchor: str, target: str) -> str:
    return f"{case_anchor}--{_slug(target)}"


def _anchor(prefix: str, text: str, used: set[str]) -> str:
    base = f"{prefix}-{_slug(text)}"
    anchor, n = base, 2
    while anchor in used:
        anchor, n = f"{base}-{n}", n + 1
    used.add(anchor)
    return anchor


def render_html(doc: dict[str, Any], extra_trends: Sequence[Mapping[str, Any]] = ()) -> str:
    """The whole page; ``extra_trends`` adds campaign nights to the document's own ``trends``."""
    names = targets(doc)
    groups = cases(doc)
    used: set[str] = set()
    anchors = {g.id: _anchor("case", g.id, used) for g in groups}
    points = trends(doc, extra_trends)
    found = findings(doc)
    summary = doc.get("summary", {})
    sections = [("totals", "Totals"), ("matrix", "Matrix"), ("failures", "Failures")]
    if found:
        sections.append(("findings", "Findings"))
    if points:
        sections.append(("trends", "Trends"))
    sections += [("coverage", "ISA coverage"), ("cases", "Cases")]

    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>bpfcheck: {_e(summary.get('line', 'run report'))}</title>",
           f"<style>{CSS}</style>", "</head>", "<body>",
           "<header>", "<h1>bpfcheck conformance run</h1>"]
    if summary.get("line"):
        out.append(f'<p class="summary" id="summary-line">{_e(summary["line"])}</p>')
    opts = doc.get("options", {})
    out.append(f'<p class="muted">cpu {_e(opts.get("cpu", "?"))}'
               f' · groups {_e(", ".join(opts.get("groups", [])))}'
               f' · strict: {_e(opts.get("strict", "?"))} · timeout {_e(opts.get("timeout", "?"))} s'
               f' · targets: {_e(", ".join(names) or "none")} · schema {_e(doc.get("schema"))}'
               f' v{_e(doc.get("schema_version"))}</p>')
    out += [f'<p class="muted">warning: {_e(w)}</p>' for w in doc.get("warnings", [])]
    out += ["</header>", "<nav>" + "".join(f'<a href="#{s}">{_e(t)}</a>' for s, t in sections) + "</nav>"]

    out += _totals(doc, names)
    out += _matrices(doc)
    out += _failures(doc, anchors)
    if found:
        out += _findings(found)
    if points:
        out += _trends(points)
    out += _coverage(doc, names)
    out += _cases(groups, names, anchors)
    out += [f"<script>{JS}</script>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _totals(doc: dict[str, Any], names: list[str]) -> list[str]:
    out = ['<section id="totals">', "<h2>Totals</h2>", "<table>",
           "<tr><th>target</th>" + "".join(f"<th>{c}</th>" for c in _COLUMNS) + "<th>total</th></tr>"]
    for t in names:
        counts = doc.get("per_target", {}).get(t, {})
        tds = "".join(f'<td class="num">{counts.get(c, 0)}</td>' for c in (*_COLUMNS, "total"))
        out.append(f"<tr><td>{_e(t)}</td>{tds}</tr>")
    s = doc.get("summary", {})
    if len(names) > 1:
        out.append("<tr><th>all</th>" + "".join(f'<th class="num">{s.get(c, 0)}</th>' for c in _COLUMNS)
                   + f'<th class="num">{s.get("total", 0)}</th></tr>')
    out += ["</table>", "</section>"]
    return out


def _matrices(doc: dict[str, Any]) -> list[str]:
    out = ['<section id="matrix">', "<h2>Conformance matrix</h2>",
           '<p class="muted">Counts of case × target results (fail includes error and xpass). '
           "A case counts under the most specific RFC 9669 groups it needs. "
           "Click a cell to list its cases.</p>"]
    for dimension in ("group", "topic", "cpu"):
        m = matrix(doc, dimension)
        out += [f"<h3>{_e(m.title)}</h3>", f'<table id="matrix-{dimension}" class="matrix">',
                f"<tr><th>{_e(m.dimension)}</th>" + "".join(f"<th>{_e(t)}</th>" for t in m.targets) + "</tr>"]
        for row in m.rows:
            tds = []
            for t in m.targets:
                verdicts = m.cells.get((row, t))
                counts = cell_counts(verdicts)
                tip = ", ".join(f"{k} {v}" for k, v in sorted((verdicts or {}).items()))
                attrs = (f' data-kind="{dimension}" data-value="{_e(row)}" data-target="{_e(t)}"'
                         if verdicts else "")
                tds.append(f'<td class="cell {cell_status(verdicts)}"{attrs} title="{_e(tip)}" '
                           f'data-pass="{counts["pass"]}" data-fail="{counts["fail"]}">'
                           f"{_e(cell_text(verdicts))}</td>")
            out.append(f"<tr><th>{_e(row)}</th>{''.join(tds)}</tr>")
        out.append("</table>")
    out.append("</section>")
    return out


def _diff_table(r: dict[str, Any]) -> list[str]:
    diff = first_difference(r)
    if diff is None:
        return []
    return ['<table class="diff">', "<tr><th>first difference</th><th>expected</th><th>actual</th></tr>",
            f"<tr><td>{_e(diff.part)}</td><td><code>{_e(diff.expected)}</code></td>"
            f"<td><code>{_e(diff.actual)}</code></td></tr>", "</table>"]


def _failures(doc: dict[str, Any], anchors: dict[str, str]) -> list[str]:
    failed = [r for r in doc.get("results", []) if r["verdict"] in FAILED_VERDICTS]
    out = ['<section id="failures">', f"<h2>Failures ({len(failed)})</h2>"]
    if not failed:
        out.append('<p class="muted">None.</p>')
    for r in failed:
        cid = case_id(r)
        anchor = anchors.get(cid, "")
        link = _result_anchor(anchor, r["target"])
        out += ['<div class="failure">',
                f'<h3>{_badge(r["verdict"])}<a href="#{_e(link)}">{_e(cid)}</a> on {_e(r["target"])}</h3>']
        if r.get("message"):
            out.append(f'<p class="message">{_e(r["message"])}</p>')
        out += _diff_table(r)
        out.append(f'<p class="muted">expected {_e(describe_expected(r.get("expected")))} — '
                   f'provenance: {_e(provenance_text(r))} — file {_e(r.get("path", ""))}</p>')
        out.append("</div>")
    out.append("</section>")
    return out


def _findings(found: list[dict[str, Any]]) -> list[str]:
    out = ['<section id="findings">', f"<h2>Fuzz findings ({len(found)})</h2>"]
    for i, f in enumerate(found, 1):
        out += [f'<div class="finding" id="finding-{i}">', f"<h3>{_e(f.get('signature', '?'))}</h3>",
                '<dl class="facts">', f"<dt>seed</dt><dd><code>{_e(f.get('seed', '?'))}</code></dd>"]
        if f.get("targets"):
            out.append(f"<dt>targets</dt><dd>{_e(', '.join(str(t) for t in f['targets']))}</dd>")
        if f.get("message"):
            out.append(f"<dt>message</dt><dd>{_e(f['message'])}</dd>")
        replay = replay_command(f)
        out.append(f"<dt>replay</dt><dd><code>{_e(replay) if replay else '—'}</code></dd>")
        for key in sorted(set(f) - {"signature", "seed", "targets", "message", "replay", "reproducer"}):
            out.append(f"<dt>{_e(key)}</dt><dd>{_e(f[key])}</dd>")
        out.append("</dl>")
        repro = str(f.get("reproducer") or "")
        if repro and is_program_hex(repro):
            code = repro.replace(" ", "")
            out += ['<div class="programs">',
                    f"<div><b>reproducer (uBPF)</b><pre>{_e(disassembly(code, 'ubpf'))}</pre></div>",
                    f"<div><b>reproducer (LLVM)</b><pre>{_e(disassembly(code, 'llvm'))}</pre></div>",
                    "</div>", f'<pre class="hex">{_e(code)}</pre>']
        elif repro:
            out.append(f"<p>reproducer: <code>{_e(repro)}</code></p>")
        out.append("</div>")
    out.append("</section>")
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _trends(points: list[dict[str, Any]]) -> list[str]:
    out = ['<section id="trends">', f"<h2>Campaign trends ({len(points)} nights)</h2>",
           '<div class="charts">']
    for key in TREND_FIELDS:
        title, unit = _TREND_TITLES[key]
        series = [(p["date"], _number(p.get(key))) for p in points]
        out.append(line_chart(title, series, unit=unit, css_class=f"chart trend-{key}"))
    out += ["</div>", "<table>", "<tr><th>date</th>" + "".join(f"<th>{_e(k)}</th>" for k in TREND_FIELDS)
            + "</tr>"]
    for p in points:
        tds = "".join(f'<td class="num">{_e("—" if p.get(k) is None else p[k])}</td>' for k in TREND_FIELDS)
        out.append(f"<tr><td>{_e(p['date'])}</td>{tds}</tr>")
    out += ["</table>", "</section>"]
    return out


def _coverage(doc: dict[str, Any], names: list[str]) -> list[str]:
    rows = coverage(doc)
    totals = coverage_totals(rows, names)
    by_group: dict[str, list[Any]] = {g.value: [] for g in Group}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    out = ['<section id="coverage">', "<h2>ISA coverage</h2>",
           '<p class="muted">Rows of the ISA table (reference_vm.isa) used by the programs each target ran '
           "(every verdict but SKIP).</p>",
           '<table id="coverage-summary">',
           "<tr><th>group</th><th>rows</th>" + "".join(f"<th>{_e(t)}</th>" for t in names) + "</tr>"]
    for group, members in by_group.items():
        if not members:
            continue
        cells = "".join(f'<td class="num">{sum(1 for r in members if r.ran.get(t))}</td>' for t in names)
        out.append(f"<tr><td>{_e(group)}</td><td class=\"num\">{len(members)}</td>{cells}</tr>")
    out.append(f'<tr><th>all</th><th class="num">{len(rows)}</th>'
               + "".join(f'<th class="num">{totals[t]}</th>' for t in names) + "</tr>")
    out += ["</table>", "<details><summary>Every row of the ISA table</summary>",
            '<table id="coverage-rows">',
            "<tr><th>row</th><th>mnemonic</th><th>opcode</th><th>group</th><th>cpu</th>"
            + "".join(f"<th>{_e(t)}</th>" for t in names) + "</tr>"]
    for row in rows:
        tds = []
        for t in names:
            n, bad = row.ran.get(t, 0), row.failed.get(t, 0)
            cls = "covbad" if bad else ("cov0" if not n else "")
            text = "—" if not n else (f"{n} ({bad} failed)" if bad else str(n))
            tds.append(f'<td class="num {cls}">{text}</td>')
        out.append(f"<tr><td>{_e(row.name)}</td><td>{_e(row.mnemonic)}</td><td><code>{row.opcode:#04x}</code></td>"
                   f"<td>{_e(row.group)}</td><td>v{row.cpu}</td>{''.join(tds)}</tr>")
    out += ["</table>", "</details>", "</section>"]
    return out


def _cases(groups: list[CaseGroup], names: list[str], anchors: dict[str, str]) -> list[str]:
    out = ['<section id="cases">', f"<h2>Cases ({len(groups)})</h2>",
           '<div class="controls">',
           '<input type="search" id="filter" placeholder="filter by name or path" aria-label="filter">',
           '<select id="verdict-filter" aria-label="verdict">'
           '<option value="all">all verdicts</option><option value="bad">not passing</option>'
           + "".join(f'<option value="{v}">{v}</option>' for v in ("FAIL", "ERROR", "XPASS", "SKIP", "XFAIL"))
           + '<option value="PASS">PASS</option></select>',
           '<span id="cell-filter"></span>', '<span id="shown" class="muted"></span>', "</div>"]
    for g in groups:
        out += _case(g, names, anchors[g.id])
    out.append("</section>")
    return out


def _case(g: CaseGroup, names: list[str], anchor: str) -> list[str]:
    first = g.first
    bad = any(r["verdict"] in FAILED_VERDICTS for r in g.results.values())
    verdicts = " ".join(f"{t}:{g.results[t]['verdict']}" for t in names if t in g.results)
    search = f"{g.id} {first.get('path', '')}".lower()
    attrs = (f'id="{_e(anchor)}" class="case{" bad" if bad else ""}" data-topic="{_e(topic(first))}" '
             f'data-group="{_e(" ".join(primary_groups(groups_of(first))))}" data-cpu="{_e(cpu_of(first))}" '
             f'data-verdicts="{_e(verdicts)}" data-search="{_e(search)}"')
    badges = " ".join(f'{_badge(g.results[t]["verdict"])}<span class="muted">{_e(t)}</span>'
                      for t in names if t in g.results)
    out = [f"<details {attrs}{' open' if bad else ''}>", f"<summary><b>{_e(g.id)}</b> {badges}</summary>",
           '<dl class="facts">',
           f"<dt>file</dt><dd><code>{_e(first.get('path', ''))}</code></dd>",
           f"<dt>topic</dt><dd>{_e(topic(first))}</dd>",
           f"<dt>requires</dt><dd>{_e(', '.join(groups_of(first)))} · cpu {_e(cpu_of(first))}</dd>",
           f"<dt>expected</dt><dd>{_e(describe_expected(first.get('expected')))}</dd>",
           f"<dt>provenance</dt><dd>{_e(provenance_text(first))}</dd>", "</dl>"]
    program = first.get("program_hex")
    if program:
        out.append('<div class="programs">')
        for dialect, label in (("ubpf", "uBPF"), ("llvm", "LLVM")):
            out.append(f'<div><b>{label} dialect</b><pre class="asm-{dialect}">'
                       f"{_e(disassembly(program, dialect))}</pre></div>")
        out.append("</div>")
    plain = [t for t in names if t in g.results and _plain_pass(g.results[t])]
    if plain:
        out.append(f'<p class="passed">{_badge("PASS")}{_e(", ".join(plain))}</p>')
    for t in names:
        r = g.results.get(t)
        if r is not None and t not in plain:
            out += _result(r, anchor)
    out.append("</details>")
    return out


def _plain_pass(r: dict[str, Any]) -> bool:
    """A PASS with nothing more to show (no message, no native code): one line for all of them."""
    return r["verdict"] == "PASS" and not r.get("message") and not native_code(r)


def _result(r: dict[str, Any], anchor: str) -> list[str]:
    out = [f'<div class="result" id="{_e(_result_anchor(anchor, r["target"]))}">',
           f'<h4>{_badge(r["verdict"])}{_e(r["target"])}</h4>']
    if r.get("message"):
        out.append(f'<p class="message">{_e(r["message"])}</p>')
    out += _diff_table(r)
    div = r.get("divergence")
    if div:
        out.append(f'<p>expected divergence: {_e(div.get("reason", ""))} '
                   f'<span class="muted">({_e(div.get("file"))}:{_e(div.get("line"))})</span></p>')
    for label, text in native_code(r).items():
        out.append(f"<b>native code ({_e(label)})</b><pre class=\"native\">{_e(text)}</pre>")
    outcome = r.get("outcome")
    if outcome is not None and r["verdict"] != "PASS":
        state = "\n".join(state_lines(outcome))
        out.append(f"<details><summary>final state</summary><pre>{_e(state)}</pre></details>")
    out.append("</div>")
    return out
