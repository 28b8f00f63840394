/**
 * The dashboard's stylesheet and script, served from /dashboard/assets/ so that a page loads
 * nothing from any other host (the pages' Content-Security-Policy forbids it anyway).
 */

/** Served as /dashboard/assets/dashboard.css. */
export const DASHBOARD_CSS = `
:root {
  --ink: #1d2433; --muted: #5b6475; --line: #d8dde6; --paper: #ffffff; --wash: #f4f6f9;
  --blue: #1f5fbf; --green: #1e7b45; --amber: #a35c00; --red: #b3261e; --violet: #6b3fa0;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--wash);
}
* { box-sizing: border-box; }
body { margin: 0; }
a { color: var(--blue); }
header.top {
  display: flex; align-items: center; gap: 16px; padding: 10px 24px;
  background: var(--ink); color: #fff;
}
header.top a { color: #fff; text-decoration: none; font-weight: 600; }
header.top .who { margin-left: auto; color: #c9d1e0; }
header.top form { margin: 0; }
header.top button { background: transparent; color: #fff; border: 1px solid #7d879a; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 16px; margin: 28px 0 10px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.card {
  background: var(--paper); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
}
table { border-collapse: collapse; width: 100%; background: var(--paper); }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
td.num, th.num { text-align: right; white-space: nowrap; }
td code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
tr.empty td { color: var(--muted); text-align: center; padding: 24px; }
.badge {
  display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; background: #e8ebf1; color: var(--ink); white-space: nowrap;
}
.status-running { background: #dde9fb; color: var(--blue); }
.status-succeeded { background: #dcf1e4; color: var(--green); }
.status-failed, .status-rejected { background: #f9e0de; color: var(--red); }
.status-needs_cleanup { background: #fbe9d2; color: var(--amber); }
form.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin-bottom: 14px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
select, input[type=password], input[type=text] {
  font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 6px;
  background: #fff;
}
button {
  font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid var(--blue);
  background: var(--blue); color: #fff; cursor: pointer;
}
button.danger { background: var(--red); border-color: var(--red); }
button.quiet { background: #fff; color: var(--blue); }
button[disabled], button.danger[disabled] {
  background: #e8ebf1; border-color: var(--line); color: var(--muted); cursor: not-allowed;
}
.actions { display: flex; gap: 10px; flex-wrap: wrap; margin: 14px 0; }
.actions form { margin: 0; }
.notice { padding: 10px 14px; border-radius: 6px; margin: 0 0 14px; background: #dde9fb; }
.notice.problem { background: #f9e0de; color: var(--red); }
.error-box {
  border: 1px solid #efb7b2; background: #fdf1f0; border-radius: 8px; padding: 12px 14px;
  margin: 14px 0;
}
.error-box strong { color: var(--red); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-word; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; }
.live { font-size: 12px; color: var(--muted); }
.live[data-state=polling]::before { content: "\\25CF  "; color: var(--green); }
.timeline td { vertical-align: top; }
.timeline tr.ev-step-failed td, .timeline tr.ev-run-unresumable td { background: #fdf1f0; }
.timeline tr.ev-step-retrying td { background: #fff7e8; }
.timeline tr.ev-operator-action td { background: #f1ebf8; }
.timeline .err { color: var(--red); }
.timeline .detail { color: var(--muted); font-size: 12px; word-break: break-all; }
.chart-wrap { overflow-x: auto; }
svg.chart { width: 100%; min-width: 900px; height: auto; display: block; }
svg.chart text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg.chart text.step { font-size: 10px; fill: var(--muted); }
.chart-state text { text-anchor: middle; }
.chart-group rect { fill: #f7f8fb; stroke: #c3c9d5; stroke-dasharray: 4 3; }
.chart-group.visited rect { fill: #f1f7f3; stroke: #8fbf9f; }
.chart-group text { font-weight: 600; fill: var(--muted); }
.chart-edge { stroke: #cfd5df; stroke-width: 1; fill: none; }
.chart-taken { stroke: var(--violet); stroke-width: 2.5; fill: none; }
.chart-arrow-head { fill: var(--violet); }
.chart-state rect { fill: #fff; stroke: #b6bdca; stroke-width: 1.2; }
.chart-state rect.inner { fill: none; }
.chart-state .initial { fill: var(--ink); }
.chart-state.visited rect { fill: #e3f3e8; stroke: var(--green); }
.chart-state.visited rect.inner { fill: none; }
.chart-state.current rect { stroke-width: 3.5; }
.chart-state.current.tone-running rect { fill: #dde9fb; stroke: var(--blue); }
.chart-state.current.tone-waiting rect { fill: #fff1d6; stroke: var(--amber); }
.chart-state.current.tone-done rect { fill: #c9ecd6; stroke: var(--green); }
.chart-state.current.tone-failed rect { fill: #f9e0de; stroke: var(--red); }
.chart-state.current rect.inner { fill: none; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: var(--muted); }
.legend span::before {
  content: ""; display: inline-block; width: 12px; height: 12px; border-radius: 3px;
  margin-right: 6px; vertical-align: -2px; border: 2px solid #b6bdca; background: #fff;
}
.legend .l-visited::before { background: #e3f3e8; border-color: var(--green); }
.legend .l-running::before { background: #dde9fb; border-color: var(--blue); }
.legend .l-waiting::before { background: #fff1d6; border-color: var(--amber); }
.legend .l-failed::before { background: #f9e0de; border-color: var(--red); }
.legend .l-path::before { height: 3px; border: 0; background: var(--violet); vertical-align: 3px; }
.login { max-width: 380px; margin: 80px auto; }
.login label { display: block; margin: 12px 0 6px; }
.login input { width: 100%; }
.login button { margin-top: 14px; }
`;

/**
 * Served as /dashboard/assets/dashboard.js. Polls the page's status endpoint while something is
 * in flight and reloads when it changes; asks before destructive actions.
 */
export const DASHBOARD_JS = `'use strict';
(function () {
  var live = document.getElementById('live');
  if (live) {
    var url = live.getAttribute('data-poll-url');
    var version = live.getAttribute('data-version');
    var busyMs = Number(live.getAttribute('data-busy-ms')) || 1000;
    var idleMs = Number(live.getAttribute('data-idle-ms')) || 0;
    var until = Number(live.getAttribute('data-live-until')) || 0;
    var inFlight = live.getAttribute('data-live') === 'true';

    var schedule = function () {
      var wait = inFlight || Date.now() < until ? busyMs : idleMs;
      live.setAttribute('data-state', wait > 0 ? 'polling' : 'stopped');
      if (wait > 0) setTimeout(tick, wait);
    };
    var tick = function () {
      fetch(url, { headers: { accept: 'application/json' }, cache: 'no-store',
        credentials: 'same-origin' })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (body && body.version !== version) {
            window.location.reload();
            return;
          }
          if (body) inFlight = body.live === true;
          schedule();
        })
        .catch(function () { schedule(); });
    };
    schedule();
  }

  var forms = document.querySelectorAll('form[data-confirm]');
  for (var i = 0; i < forms.length; i += 1) {
    forms[i].addEventListener('submit', function (event) {
      var question = event.currentTarget.getAttribute('data-confirm');
      if (!window.confirm(question)) event.preventDefault();
    });
  }
})();
`;
