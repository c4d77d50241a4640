"""The style sheet and the script of the HTML leaderboard page (:mod:`bench.report.html`),
inlined into every page so that nothing is fetched when it is viewed."""

CSS = """
:root {
  --fg: #1f2933; --muted: #66788a; --line: #dde3ea; --head: #f1f4f8; --accent: #1c5fa8;
  --best-bg: #dcf3e3; --best-fg: #0f5132; --pub-bg: #f7f5fc; --pub-fg: #4f4477;
}
* { box-sizing: border-box; }
body {
  margin: 0; color: var(--fg); background: #f5f7fa;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
code { font: 0.88em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.page { background: #14283f; color: #f5f7fa; padding: 28px 0 18px; }
.wrap, main, footer.page { max-width: 1200px; margin: 0 auto; padding-left: 28px; padding-right: 28px; }
.kicker { margin: 0; text-transform: uppercase; letter-spacing: 0.08em; font-size: 0.78em; color: #9fb3c8; }
h1 { margin: 4px 0 6px; font-size: 1.7em; font-weight: 650; }
.facts { margin: 0 0 14px; color: #c7d3df; }
.facts code { color: #f5f7fa; }
header nav a { color: #d9e6f2; margin-right: 20px; font-weight: 500; }
.banner.synthetic {
  max-width: 1144px; margin: 20px auto 0; padding: 14px 18px; border-radius: 6px;
  background: #fff1e0; border: 1px solid #f5b971; border-left: 6px solid #e8590c; color: #6e2c00;
  font-size: 1.05em;
}
section.card {
  background: #fff; border: 1px solid var(--line); border-radius: 8px;
  margin: 22px 0; padding: 18px 22px 20px; box-shadow: 0 1px 2px rgba(20, 40, 63, 0.04);
}
h2 { margin: 0 0 6px; font-size: 1.3em; }
h3 { margin: 22px 0 8px; font-size: 1.05em; }
h4 { margin: 12px 0 4px; font-size: 0.95em; }
.legend, .note, .muted, .empty { color: var(--muted); }
.legend { margin-top: 0; font-size: 0.92em; }
.note { background: var(--head); border-radius: 6px; padding: 8px 12px; font-size: 0.92em; }
.best-key { color: var(--best-fg); background: var(--best-bg); font-weight: 700; padding: 0 4px; border-radius: 3px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: 0.93em; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--head); font-weight: 600; border-bottom: 2px solid #c9d3de; white-space: nowrap; }
.num { text-align: right; white-space: nowrap; }
tbody th { font-weight: 500; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable:hover { background: #e4eaf1; }
th.sortable::after { content: "\\2195"; color: #a3b0bd; margin-left: 5px; font-size: 0.85em; }
th[aria-sort="ascending"]::after { content: "\\25B2"; color: var(--accent); }
th[aria-sort="descending"]::after { content: "\\25BC"; color: var(--accent); }
tr.measured:hover { background: #f8fafc; }
td.best { background: var(--best-bg); color: var(--best-fg); }
tbody.published-head th {
  background: #fff; color: var(--pub-fg); font-weight: 600; font-size: 0.85em;
  border-top: 2px dashed #c8bfe3; padding-top: 10px;
}
tr.published { background: var(--pub-bg); color: var(--pub-fg); font-style: italic; }
tr.published th { font-weight: 400; }
.badge {
  display: inline-block; margin-left: 6px; padding: 0 7px; border-radius: 999px; font-style: normal;
  font-size: 0.7em; font-weight: 700; letter-spacing: 0.04em; text-transform: uppercase;
  vertical-align: 1px;
}
.badge.published { background: #e6dcff; color: #5f3dc4; }
.badge.reference { background: #e3f0fc; color: #1c5fa8; }
.badge.dirty { background: #fff0c2; color: #a15c00; }
sup.fn { font-style: normal; margin-left: 2px; }
code.run-id { color: var(--muted); margin-left: 4px; }
ol.footnotes { margin: 8px 0 0; padding-left: 22px; color: var(--muted); font-size: 0.85em; }
ol.footnotes li:target { background: #fff8c5; }
#figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 18px; }
#figures > h2 { grid-column: 1 / -1; }
figure.plot { margin: 0; padding: 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figure.plot h3 { margin: 0 0 8px; }
figure.plot img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure.plot figcaption { margin-top: 8px; color: var(--muted); font-size: 0.9em; }
details.drilldown { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0; }
details.drilldown > summary { cursor: pointer; padding: 9px 14px; background: var(--head); border-radius: 6px; }
details.drilldown[open] > summary { border-bottom: 1px solid var(--line); border-radius: 6px 6px 0 0; }
details.drilldown .task { font-weight: 650; margin-right: 8px; }
details.drilldown > .scroll, details.drilldown > .excluded, details.drilldown > p { margin: 10px 14px; }
th.subject, .group { border-left: 1px solid #c9d3de; }
th.subject { text-align: center; }
td.excluded { color: #a3b0bd; }
.excluded ul { margin: 0; padding-left: 20px; font-size: 0.9em; }
p.excluded.none { font-size: 0.88em; color: var(--muted); }
table.provenance { font-size: 0.85em; }
table.provenance th, table.provenance td { white-space: nowrap; padding: 6px 8px; }
table.provenance .wraps { white-space: normal; }
table.leaderboard > thead th:first-child { width: 30%; }
tr:target { outline: 2px solid var(--accent); }
td.health { white-space: nowrap; font-size: 0.82em; color: var(--muted); }
td.health a { color: inherit; }
td.health.warn { background: #fff4e5; color: #6e3b00; }
.health-warning { color: #d9480f; font-weight: 700; }
.loss-status {
  display: inline-block; padding: 0 6px; border-radius: 999px; background: #e9eef3; color: var(--fg);
}
.loss-status.status-still-falling, .loss-status.status-flat, .loss-status.status-rising,
.loss-status.status-too-short { background: #ffe3c2; color: #8a3c00; }
.loss-status.status-turned, .loss-status.status-plateau { background: #dcf3e3; color: #0f5132; }
.metric { margin-left: 6px; }
.down, .collapsed { color: #c92a2a; font-weight: 700; }
table.health-table { font-size: 0.85em; }
table.health-table td { white-space: nowrap; }
table.health-table td:nth-child(2), table.health-table td:last-child, table.health-table td.wraps {
  white-space: normal;
}
table.health-table td:nth-child(2) { min-width: 250px; }
table.health-table td:last-child { min-width: 240px; }
table.health-table ul { margin: 0; padding-left: 0; list-style: none; }
table.health-table tr.warn { background: #fff8ef; }
dl.definitions { font-size: 0.88em; color: var(--muted); margin: 14px 0 0; }
dl.definitions dt { font-weight: 650; color: var(--fg); margin-top: 6px; }
dl.definitions dd { margin: 2px 0 0 0; }
footer.page { color: var(--muted); font-size: 0.85em; padding-bottom: 32px; }
"""

# Sorting: numeric columns on the point estimate in data-value, first click descending (a higher
# AUROC is better), empty cells always last; each tbody is sorted on its own so published rows
# never mix into the measured ones.
JS = """
(function () {
  function key(row, col, numeric) {
    var cell = row.cells[col];
    var raw = cell ? (cell.getAttribute('data-value') || '') : '';
    if (!numeric) return raw ? raw.toLowerCase() : null;
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }
  function sortBy(table, th) {
    var col = Number(th.getAttribute('data-col'));
    var numeric = th.getAttribute('data-type') === 'num';
    var now = th.getAttribute('aria-sort');
    var dir = now === 'descending' ? 'ascending' : now === 'ascending' ? 'descending'
      : numeric ? 'descending' : 'ascending';
    table.querySelectorAll('thead th[aria-sort]').forEach(function (h) {
      h.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', dir);
    var sign = dir === 'ascending' ? 1 : -1;
    table.querySelectorAll('tbody.sortable-body').forEach(function (body) {
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, col, numeric), y = key(b, col, numeric);
        if (x === null || y === null) return (x === null) - (y === null);
        return x < y ? -sign : x > y ? sign : 0;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('thead th.sortable').forEach(function (th) {
      th.tabIndex = 0;
      th.title = 'sort by this column';
      th.addEventListener('click', function () { sortBy(table, th); });
      th.addEventListener('keydown', function (event) {
        if (event.key === 'Enter' || event.key === ' ') { event.preventDefault(); sortBy(table, th); }
      });
    });
  });
})();
"""
