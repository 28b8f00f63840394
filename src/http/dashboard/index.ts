/**
 * The operator dashboard, mounted at /dashboard by `createApp`: the runs (filterable by status
 * and state), each run's statechart, history and resources, and the retry / rollback / cancel
 * buttons. Pages are rendered on the server; one small local script keeps a page current while
 * its run is in flight. Nothing is loaded from another host, and the Content-Security-Policy
 * says so to the browser.
 *
 * Behind the admin tokens: a Bearer header, or a session cookie from the sign-in form (see
 * auth.ts). Without any configured token every route here answers 404, like the admin API.
 */
import { createHash } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Kysely } from 'kysely';
import type { AnyStateMachine } from 'xstate';
import { listRuns, type RunRow } from '../../../db/runs.repository.js';
import { RUN_STATUSES, type Database, type RunStatus } from '../../../db/schema.js';
import { siteCreationMachine } from '../../../machines/site-creation.machine.js';
import type { AdminToken } from '../../config.js';
import type { Logger } from '../../logger.js';
import type { OperatorAction, OperatorOutcome } from '../../runs/runner.js';
import { loadRunView, type RunView } from '../../runs/view.js';
import { DASHBOARD_CSS, DASHBOARD_JS } from './assets.js';
import {
  DashboardAuth,
  SESSION_COOKIE,
  SESSION_MAX_AGE_MS,
  csrfMatches,
  fromSameOrigin,
  isSecure,
  type DashboardSession,
} from './auth.js';
import { loginPage, messagePage, runPage, runsPage } from './pages.js';
import { layoutChart, leafStates, marksOf, renderChart } from './statechart.js';

/** What the dashboard needs; `AppDependencies` satisfies it. */
export interface DashboardDependencies {
  db: Kysely<Database>;
  runner: { operate(runId: string, action: OperatorAction, by: string): Promise<OperatorOutcome> };
  logger: Logger;
  adminTokens: AdminToken[];
  /** The machine to draw; the site-creation machine by default. */
  machine?: AnyStateMachine;
  /** The clock, for tests. */
  now?: () => number;
}

type DashboardEnv = { Variables: { session: DashboardSession } };

const BASE = '/dashboard';
/** After an operator action the run page keeps polling this long, until the new go shows. */
const WATCH_AFTER_ACTION_MS = 30_000;
const RUN_POLL_MS = 1_000;
const LIST_POLL_MS = 1_500;
const LIST_IDLE_POLL_MS = 10_000;
const LIST_LIMIT = 200;

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

const NOTICES: Record<OperatorAction, string> = {
  retry: 'Retry started: the run goes again, reusing what still exists.',
  rollback: 'Rollback started: what the run created is being undone.',
  cancel: 'Cancel requested: the run stops and rolls back what it created.',
};

const PROBLEMS: Record<Extract<OperatorOutcome, { ok: false }>['reason'], string> = {
  not_found: 'There is no such run.',
  unknown_version: 'This run was made by another machine version, which this service cannot run.',
  not_running: 'Only a run in flight can be cancelled; this one has finished.',
  not_finished: 'Only a failed run can be retried or rolled back; this one is not failed.',
  busy: 'The run is already being driven; wait for it to finish.',
};

/** The dashboard's routes, to mount at /dashboard. */
export function createDashboard(deps: DashboardDependencies) {
  const app = new Hono<DashboardEnv>();
  const auth = new DashboardAuth(deps.adminTokens, deps.now);
  const now = deps.now ?? Date.now;
  const machine = deps.machine ?? siteCreationMachine;
  const chart = layoutChart(machine);
  const states = leafStates(machine);

  app.use('*', async (c, next) => {
    if (!auth.enabled) return c.text('Not Found', 404);

    await next();
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
  });

  app.get('/assets/dashboard.css', (c) => asset(c, DASHBOARD_CSS, 'text/css'));
  app.get('/assets/dashboard.js', (c) => asset(c, DASHBOARD_JS, 'text/javascript'));

  app.get('/login', (c) => c.html(loginPage(safeNext(c.req.query('next')), false)));

  app.post('/login', async (c) => {
    if (!fromSameOrigin(c)) return c.html(messagePage('Refused', 'Cross-site sign-in.'), 403);
    const form = await c.req.parseBody();
    const token = typeof form.token === 'string' ? form.token : '';
    const next = safeNext(typeof form.next === 'string' ? form.next : undefined);

    const issued = auth.issue(token);
    if (!issued) {
      deps.logger.warn({ path: c.req.path }, 'dashboard sign-in refused');

      return c.html(loginPage(next, true), 401);
    }

    setCookie(c, SESSION_COOKIE, issued.value, {
      path: BASE,
      httpOnly: true,
      sameSite: 'Strict',
      secure: isSecure(c),
      maxAge: Math.floor(SESSION_MAX_AGE_MS / 1000),
    });
    deps.logger.info({ operator: issued.operator }, 'dashboard sign-in');

    return c.redirect(next, 303);
  });

  app.use('*', async (c, next) => {
    const header = c.req.header('authorization');
    if (header !== undefined) {
      const match = /^Bearer\s+(.+)$/i.exec(header.trim());
      const operator = match?.[1] ? auth.checkToken(match[1]) : undefined;
      if (!operator) {
        c.header('WWW-Authenticate', 'Bearer realm="site-orchestrator"');

        return c.json({ error: 'unauthorized', message: 'a valid admin token is required' }, 401);
      }
      c.set('session', { operator, via: 'bearer', csrf: '' });

      return next();
    }

    const session = auth.verify(getCookie(c, SESSION_COOKIE));
    if (!session) return refuse(c);
    c.set('session', session);

    return next();
  });

  // Every POST below changes something: it must come from this origin with the session's token.
  app.use('*', async (c, next) => {
    if (c.req.method !== 'POST') return next();

    const session = c.get('session');
    const form = await c.req.parseBody();
    if (session.via === 'cookie' && (!fromSameOrigin(c) || !csrfMatches(session, form.csrf))) {
      deps.logger.warn({ path: c.req.path, operator: session.operator }, 'dashboard CSRF refused');

      return c.html(
        messagePage('Refused', 'The form was stale or came from another site. Reload and retry.'),
        403,
      );
    }

    return next();
  });

  app.post('/logout', (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: BASE });

    return c.redirect(`${BASE}/login`, 303);
  });

  app.get('/', async (c) => {
    const filter = readFilter(c.req.query('status'), c.req.query('state'));
    if (!filter) {
      return c.html(messagePage('Bad filter', 'Unknown status or state.', c.get('session')), 400);
    }
    const runs = await listRuns(deps.db, { ...filter, limit: LIST_LIMIT });

    return c.html(
      runsPage({
        runs,
        filter,
        statuses: RUN_STATUSES,
        states,
        now: now(),
        session: c.get('session'),
        live: {
          pollUrl: `${BASE}/runs.json${new URL(c.req.url).search}`,
          version: listVersion(runs),
          live: runs.some((run) => run.status === 'running'),
          busyMs: LIST_POLL_MS,
          idleMs: LIST_IDLE_POLL_MS,
        },
      }),
    );
  });

  app.get('/runs.json', async (c) => {
    const filter = readFilter(c.req.query('status'), c.req.query('state'));
    if (!filter) return c.json({ error: 'bad_filter', message: 'unknown status or state' }, 400);
    const runs = await listRuns(deps.db, { ...filter, limit: LIST_LIMIT });

    return c.json({
      version: listVersion(runs),
      live: runs.some((run) => run.status === 'running'),
      runs: runs.map((run) => ({ id: run.id, state: run.state, status: run.status })),
    });
  });

  app.get('/runs/:id', async (c) => {
    const view = await loadRunView(deps.db, c.req.param('id'));
    const session = c.get('session');
    if (!view) return c.html(messagePage('No such run', PROBLEMS.not_found, session), 404);

    // Set by an operator action's redirect: poll until the new go shows, even if not yet saved.
    const since = Number(c.req.query('since'));
    const clock = now();
    const watching =
      Number.isFinite(since) && since <= clock + 5_000 && since > clock - WATCH_AFTER_ACTION_MS;
    const action = c.req.query('notice');
    const problem = c.req.query('problem');

    return c.html(
      runPage({
        view,
        chart: renderChart(chart, marksOf(chart, view)),
        session,
        now: clock,
        ...(isAction(action) ? { notice: NOTICES[action] } : {}),
        ...(problem !== undefined && problem in PROBLEMS
          ? { problem: PROBLEMS[problem as keyof typeof PROBLEMS] }
          : {}),
        live: {
          pollUrl: `${BASE}/runs/${encodeURIComponent(view.id)}/status.json`,
          version: runVersion(view),
          live: view.status === 'running',
          ...(watching ? { liveUntil: since + WATCH_AFTER_ACTION_MS } : {}),
          busyMs: RUN_POLL_MS,
          idleMs: 0,
        },
      }),
    );
  });

  app.get('/runs/:id/status.json', async (c) => {
    const view = await loadRunView(deps.db, c.req.param('id'));
    if (!view) return c.json({ error: 'not_found', message: 'no run with that id' }, 404);

    return c.json({
      id: view.id,
      status: view.status,
      state: view.state,
      version: runVersion(view),
      live: view.status === 'running',
    });
  });

  for (const action of ['retry', 'rollback', 'cancel'] as const) {
    app.post(`/runs/:id/${action}`, async (c) => {
      const { operator } = c.get('session');
      const outcome = await deps.runner.operate(c.req.param('id'), action, operator);
      const runId = outcome.ok ? outcome.runId : c.req.param('id');
      const base = `${BASE}/runs/${encodeURIComponent(runId)}`;

      if (!outcome.ok) {
        deps.logger.info({ action, operator, reason: outcome.reason }, 'operator action refused');
        if (outcome.reason === 'not_found') {
          return c.html(messagePage('No such run', PROBLEMS.not_found, c.get('session')), 404);
        }

        return c.redirect(`${base}?problem=${outcome.reason}`, 303);
      }

      deps.logger.info({ runId: outcome.runId, action, operator }, 'operator action accepted');

      return c.redirect(`${base}?notice=${action}&since=${now()}`, 303);
    });
  }

  return app;
}

function asset(c: Context, body: string, type: string): Response {
  c.header('content-type', `${type}; charset=utf-8`);
  c.header('cache-control', 'no-cache');

  return c.body(body);
}

/** Browsers are sent to sign in; everything else is told it is unauthorised. */
function refuse(c: Context): Response {
  if (getCookie(c, SESSION_COOKIE) !== undefined) deleteCookie(c, SESSION_COOKIE, { path: BASE });
  const wantsPage = c.req.method === 'GET' && (c.req.header('accept') ?? '').includes('text/html');
  if (wantsPage) {
    const url = new URL(c.req.url);

    return c.redirect(`${BASE}/login?next=${encodeURIComponent(url.pathname + url.search)}`, 303);
  }
  c.header('WWW-Authenticate', 'Bearer realm="site-orchestrator"');

  return c.json({ error: 'unauthorized', message: 'sign in or send a valid admin token' }, 401);
}

/** Only paths inside the dashboard: never another host, never a protocol-relative URL. */
function safeNext(next: string | undefined): string {
  if (next === undefined || !/^\/dashboard([/?]|$)/.test(next)) return BASE;
  if (next.includes('//') || next.includes('\\')) return BASE;
  // Control characters (CR, LF) have no place in a path and would break the Location header.
  if (/[\u0000-\u001f\u007f]/.test(next)) return BASE;

  return next;
}

function readFilter(
  status: string | undefined,
  state: string | undefined,
): { status?: RunStatus; state?: string } | undefined {
  const filter: { status?: RunStatus; state?: string } = {};
  if (status) {
    if (!RUN_STATUSES.includes(status as RunStatus)) return undefined;
    filter.status = status as RunStatus;
  }
  if (state) {
    // Runs made by older machine versions may sit in states this one lacks: any dotted name.
    if (!/^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$/.test(state) || state.length > 200) {
      return undefined;
    }
    filter.state = state;
  }

  return filter;
}

function isAction(value: string | undefined): value is OperatorAction {
  return value === 'retry' || value === 'rollback' || value === 'cancel';
}

function runVersion(view: RunView): string {
  return hash([view.status, view.state, view.updatedAt, view.history.length].join('|'));
}

function listVersion(runs: RunRow[]): string {
  const rows = runs.map((run) => `${run.id}|${run.status}|${run.state}|${+run.updated_at}`);

  return hash(rows.join(';'));
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 16);
}
