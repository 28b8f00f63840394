/**
 * The dashboard's pages, rendered on the server. Everything that came from a form, a database
 * row or another service goes through `html`, which escapes it.
 */
import type { RunRow, RunStatus } from '../../../db/schema.js';
import type { RunView } from '../../runs/view.js';
import type { DashboardSession } from './auth.js';
import { html, type HtmlValue, type SafeHtml } from './html.js';

/** How a page keeps itself current: see DASHBOARD_JS. */
export interface LiveOptions {
  pollUrl: string;
  /** Changes whenever what the page shows changes. */
  version: string;
  /** True while something on the page is in flight. */
  live: boolean;
  /** Keep polling until this time (ms since the epoch) even when nothing is in flight. */
  liveUntil?: number;
  busyMs: number;
  /** 0: stop polling once nothing is in flight. */
  idleMs: number;
}

export interface PageOptions {
  title: string;
  body: SafeHtml;
  session?: DashboardSession;
  live?: LiveOptions;
}

const ASSETS = '/dashboard/assets';

/** A whole HTML document. */
export function page(options: PageOptions): string {
  const { title, body, session, live } = options;

  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${title} · Site orchestrator</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${ASSETS}/dashboard.css">
<script src="${ASSETS}/dashboard.js" defer></script>
</head>
<body>
<header class="top">
  <a href="/dashboard">Site orchestrator · runs</a>
  ${live ? liveIndicator(live) : ''}
  ${session ? whoAmI(session) : ''}
</header>
<main>
${body}
</main>
</body>
</html>
`.value;
}

function liveIndicator(live: LiveOptions): SafeHtml {
  return html`<span id="live" class="live" data-poll-url="${live.pollUrl}"
    data-version="${live.version}" data-live="${String(live.live)}"
    data-live-until="${live.liveUntil ?? 0}" data-busy-ms="${live.busyMs}"
    data-idle-ms="${live.idleMs}">auto-refresh</span>`;
}

function whoAmI(session: DashboardSession): SafeHtml {
  const logout =
    session.via === 'cookie'
      ? html`<form method="post" action="/dashboard/logout">
    <input type="hidden" name="csrf" value="${session.csrf}">
    <button type="submit">Sign out</button>
  </form>`
      : '';

  return html`<span class="who">operator: ${session.operator}</span>${logout}`;
}

/** The sign-in form. */
export function loginPage(next: string, failed: boolean): string {
  const body = html`<div class="login card">
  <h1>Sign in</h1>
  <p class="sub">Use an admin token (ADMIN_TOKEN). It is checked once; the browser keeps only a
  signed session cookie.</p>
  ${failed ? html`<p class="notice problem" role="alert">That token is not valid.</p>` : ''}
  <form method="post" action="/dashboard/login">
    <input type="hidden" name="next" value="${next}">
    <label for="token">Admin token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required
      autofocus>
    <button type="submit">Sign in</button>
  </form>
</div>`;

  return page({ title: 'Sign in', body });
}

/** A short page saying what went wrong. */
export function messagePage(title: string, message: string, session?: DashboardSession): string {
  const body = html`<h1>${title}</h1><p class="sub">${message}</p>
<p><a href="/dashboard">Back to the runs</a></p>`;

  return page({ title, body, ...(session ? { session } : {}) });
}

export interface RunsPageInput {
  runs: RunRow[];
  filter: { status?: RunStatus; state?: string };
  statuses: readonly RunStatus[];
  states: Array<{ group: string; paths: string[] }>;
  now: number;
  session: DashboardSession;
  live: LiveOptions;
}

/** The runs, newest first, with the filters. */
export function runsPage(input: RunsPageInput): string {
  const { runs, filter, statuses, states, now } = input;
  const statusOptions = statuses.map(
    (status) =>
      html`<option value="${status}"${selected(filter.status === status)}>${status}</option>`,
  );
  const stateOptions = states.map(
    ({ group, paths }) => html`<optgroup label="${group}">${paths.map(
      (path) => html`<option value="${path}"${selected(filter.state === path)}>${path}</option>`,
    )}</optgroup>`,
  );
  const rows =
    runs.length === 0
      ? html`<tr class="empty"><td colspan="6">No runs match.</td></tr>`
      : runs.map((run) => runRow(run, now));

  const body = html`<h1>Runs</h1>
<p class="sub">Newest first. ${runs.length} shown.</p>
<form class="filters" method="get" action="/dashboard">
  <label>Status
    <select name="status"><option value="">any</option>${statusOptions}</select>
  </label>
  <label>State
    <select name="state"><option value="">any</option>${stateOptions}</select>
  </label>
  <button type="submit" class="quiet">Filter</button>
  ${filter.status || filter.state ? html`<a href="/dashboard">clear</a>` : ''}
</form>
<table class="runs">
  <thead><tr>
    <th>Site</th><th>Requester</th><th>Status</th><th>State</th>
    <th class="num">Age</th><th class="num">Duration</th>
  </tr></thead>
  <tbody>${rows}</tbody>
</table>`;

  return page({ title: 'Runs', body, session: input.session, live: input.live });
}

function runRow(run: RunRow, now: number): SafeHtml {
  const created = toMs(run.created_at);
  const finished = run.finished_at ? toMs(run.finished_at) : null;
  const duration = (finished ?? now) - created;
  const link = `/dashboard/runs/${encodeURIComponent(run.id)}`;
  const byState = `/dashboard?state=${encodeURIComponent(run.state)}`;
  const took = formatDuration(duration);

  return html`<tr data-run="${run.id}" data-status="${run.status}">
  <td><a href="${link}">${run.site_name ?? html`<em>not yet known</em>`}</a>
    <div class="detail mono">${run.id.slice(0, 8)}</div></td>
  <td>${run.requester_email ?? '—'}</td>
  <td>${statusBadge(run.status)}</td>
  <td><a class="mono" href="${byState}">${run.state}</a></td>
  <td class="num" title="${isoOf(created)}">${formatAge(now - created)}</td>
  <td class="num">${finished === null ? `${took} so far` : took}</td>
</tr>`;
}

export interface RunPageInput {
  view: RunView;
  chart: SafeHtml;
  session: DashboardSession;
  live: LiveOptions;
  now: number;
  notice?: string;
  problem?: string;
}

/** One run: summary, error, actions, statechart, resources and history. */
export function runPage(input: RunPageInput): string {
  const { view, now } = input;
  const created = Date.parse(view.createdAt);
  const finished = view.finishedAt ? Date.parse(view.finishedAt) : null;
  const title = view.siteName ?? `Run ${view.id.slice(0, 8)}`;

  const body = html`<h1>${title}</h1>
<p class="sub">${statusBadge(view.status)} in <code class="mono">${view.state}</code></p>
${input.notice ? html`<p class="notice" role="status">${input.notice}</p>` : ''}
${input.problem ? html`<p class="notice problem" role="alert">${input.problem}</p>` : ''}
<div class="grid2">
  <div class="card"><dl class="facts">
    <dt>Run</dt><dd class="mono">${view.id}</dd>
    <dt>Submission</dt><dd class="mono">${view.submissionId}</dd>
    <dt>Requester</dt><dd>${view.requesterEmail ?? '—'}</dd>
    <dt>Started</dt><dd>${formatTime(created)} (${formatAge(now - created)} ago)</dd>
    <dt>Finished</dt><dd>${finished === null ? '—' : formatTime(finished)}</dd>
    <dt>Duration</dt><dd>${formatDuration((finished ?? now) - created)}${
      finished === null ? ' so far' : ''
    }</dd>
    <dt>Machine</dt><dd class="mono">${view.machineVersion}${
      view.resumable ? '' : ' (not runnable by this version)'
    }</dd>
  </dl></div>
  <div class="card">${actions(view, input.session)}</div>
</div>
${errorBox(view.error)}
<h2>Statechart</h2>
<div class="card chart-wrap">${input.chart}
  <div class="legend">
    <span class="l-visited">visited</span><span class="l-running">current (running)</span>
    <span class="l-waiting">current (waiting to retry)</span>
    <span class="l-failed">current (failed)</span><span class="l-path">path taken</span>
    <span>hover a state for its transitions</span>
  </div>
</div>
<h2>Resources</h2>
${resources(view)}
<h2>History</h2>
${timeline(view)}`;

  return page({ title, body, session: input.session, live: input.live });
}

type Action = 'retry' | 'rollback' | 'cancel';

const ACTIONS: Array<{ action: Action; label: string; when: readonly string[]; confirm?: string }> =
  [
    { action: 'retry', label: 'Retry', when: ['failed', 'needs_cleanup'] },
    {
      action: 'rollback',
      label: 'Roll back',
      when: ['failed', 'needs_cleanup', 'running'],
      confirm: 'Undo everything this run created?',
    },
    {
      action: 'cancel',
      label: 'Cancel',
      when: ['running'],
      confirm: 'Stop this run and undo what it created?',
    },
  ];

function actions(view: RunView, session: DashboardSession): SafeHtml {
  const base = `/dashboard/runs/${encodeURIComponent(view.id)}`;
  const buttons = ACTIONS.map(({ action, label, when, confirm }) => {
    const allowed = when.includes(view.status) && view.resumable;
    const why = allowed ? '' : `not possible while the run is ${view.status}`;

    return html`<form method="post" action="${base}/${action}"${
      confirm ? html` data-confirm="${confirm}"` : ''
    }>
    <input type="hidden" name="csrf" value="${session.csrf}">
    <button type="submit" name="action" value="${action}"${
      action === 'retry' ? '' : html` class="danger"`
    }${allowed ? '' : html` disabled title="${why}"`}>${label}</button>
  </form>`;
  });

  return html`<strong>Operator actions</strong>
<div class="actions">${buttons}</div>
<p class="sub">Retry goes again from what still exists; roll back undoes what the run created;
cancel stops a run in flight and rolls it back. Each is recorded with your token's name.</p>`;
}

/** The fields of an ErrorRecord that are present, read defensively (stored JSON). */
function errorParts(error: unknown): { name: string; message: string; meta: string } | null {
  if (error === null || typeof error !== 'object') return null;
  const record = error as Record<string, unknown>;
  const text = (key: string) => (typeof record[key] === 'string' ? String(record[key]) : '');
  const meta = [
    text('service') && `service ${text('service')}`,
    typeof record.status === 'number' ? `status ${record.status}` : '',
    text('code') && `code ${text('code')}`,
    text('field') && `field "${text('field')}"`,
    record.retryable === true ? 'retryable' : record.retryable === false ? 'permanent' : '',
  ]
    .filter((part) => part !== '')
    .join(', ');

  return { name: text('name') || 'Error', message: text('message'), meta };
}

function errorBox(error: unknown): HtmlValue {
  const parts = errorParts(error);
  if (!parts) return '';

  return html`<div class="error-box" role="alert" data-testid="run-error">
  <strong>${parts.name}</strong>: ${parts.message}
  ${parts.meta ? html`<div class="detail">${parts.meta}</div>` : ''}
</div>`;
}

interface Resources {
  repo?: { name?: unknown; fullName?: unknown; url?: unknown } | null;
  app?: { appId?: unknown; defaultDomain?: unknown } | null;
  leftBehind?: Array<{ kind?: unknown; id?: unknown; where?: unknown; error?: unknown }>;
}

function resources(view: RunView): SafeHtml {
  const created = (view.resources ?? {}) as Resources;
  const leftBehind = Array.isArray(created.leftBehind) ? created.leftBehind : [];
  const facts: SafeHtml[] = [];
  const fact = (label: string, value: HtmlValue) => {
    facts.push(html`<dt>${label}</dt><dd>${value}</dd>`);
  };

  if (view.site) {
    fact('Site record', `#${view.site.id} ${view.site.siteStatus} / ${view.site.jobStatus}`);
  }
  const repo = created.repo;
  if (repo) fact('GitHub repository', link(String(repo.fullName ?? repo.name ?? ''), repo.url));
  if (view.repo) fact('Repository record', link(view.repo.name, view.repo.url));
  const app = created.app;
  if (app) fact('Amplify app', html`<code>${String(app.appId ?? '')}</code>`);
  if (view.deployment) {
    fact('Deployment record', html`<code>${view.deployment.hostingId}</code>`);
    fact('Staging', link(view.deployment.stagingUrl, view.deployment.stagingUrl));
    fact('Production', link(view.deployment.productionUrl, view.deployment.productionUrl));
  }
  for (const item of leftBehind) {
    const parts = errorParts(item.error);
    fact(
      `Left behind (${String(item.kind ?? 'resource')})`,
      html`<code>${String(item.id ?? '')}</code> at ${String(item.where ?? '')}${
        parts ? html` <span class="err">${parts.name}: ${parts.message}</span>` : ''
      }`,
    );
  }

  if (facts.length === 0) {
    return html`<div class="card" data-testid="resources"><p class="sub">Nothing created, or
everything created has been undone.</p></div>`;
  }

  return html`<div class="card" data-testid="resources"><dl class="facts">${facts}</dl></div>`;
}

/** A link only for web addresses; anything else is shown as text. */
function link(text: string, url: unknown): HtmlValue {
  if (typeof url === 'string' && /^https?:\/\//i.test(url)) {
    return html`<a href="${url}" rel="noreferrer noopener">${text}</a>`;
  }

  return text;
}

function timeline(view: RunView): SafeHtml {
  const start = view.history[0] ? Date.parse(view.history[0].at) : Date.parse(view.createdAt);
  const rows = view.history.map((event) => {
    const at = Date.parse(event.at);
    const parts = errorParts(event.error);
    const where = [event.step ? `step ${event.step}` : '', event.state ?? '']
      .filter((text) => text !== '')
      .join(' · ');
    const detail = event.detail ? JSON.stringify(event.detail) : '';

    return html`<tr class="ev-${event.type.replace(/[^a-z]+/gi, '-')}" data-type="${event.type}">
  <td class="num" title="${formatTime(at)}">+${formatDuration(at - start)}</td>
  <td><code>${event.type}</code></td>
  <td class="mono">${where}</td>
  <td class="num">${event.attempt ?? ''}</td>
  <td class="num">${event.durationMs === null ? '' : formatDuration(event.durationMs)}</td>
  <td>${parts ? html`<div class="err">${parts.name}: ${parts.message}</div>` : ''}
    ${parts?.meta ? html`<div class="detail">${parts.meta}</div>` : ''}
    ${event.actor ? html`<div>by ${event.actor}</div>` : ''}
    ${detail ? html`<div class="detail mono">${detail}</div>` : ''}</td>
</tr>`;
  });

  return html`<table class="timeline">
  <thead><tr><th class="num">At</th><th>Event</th><th>Where</th><th class="num">Attempt</th>
    <th class="num">Took</th><th>Error / detail</th></tr></thead>
  <tbody>${rows}</tbody>
</table>`;
}

function statusBadge(status: string): SafeHtml {
  return html`<span class="badge status-${status}">${status.replace('_', ' ')}</span>`;
}

function selected(on: boolean): HtmlValue {
  return on ? html` selected` : '';
}

function toMs(value: Date | string): number {
  return value instanceof Date ? value.getTime() : Date.parse(value);
}

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

/** `2025-03-01 09:30:12 UTC`. */
export function formatTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A coarse age: `12 s`, `5 min`, `3 h`, `2 d`. */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h`;

  return `${Math.floor(seconds / 86_400)} d`;
}

/** A duration to a useful precision: `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`. */
export function formatDuration(ms: number): string {
  const value = Math.max(0, Math.round(ms));
  if (value < 1000) return `${value} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(1)} s`;
  const seconds = Math.floor(value / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;

  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}
