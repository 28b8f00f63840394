/**
 * The operator dashboard through `app.request()`: who gets in and how, what a page escapes,
 * the filters, the CSRF guard on the buttons, and what the pages load. Real service, real
 * database, the sandbox emulators behind the steps.
 */
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds } from './helpers/database.js';
import { startHarness, type Harness } from './helpers/harness.js';
import { createDashboard } from '../src/http/dashboard/index.js';
import { layoutChart, type ChartBox } from '../src/http/dashboard/statechart.js';
import {
  FINAL_STATES,
  STEP_OF_STATE,
  siteCreationMachine,
} from '../machines/site-creation.machine.js';
import { runEvents } from '../db/runs.repository.js';

const TOKEN = 'test-admin-token-0123456789';
const BEARER = { authorization: `Bearer ${TOKEN}` };
const BROWSER = { accept: 'text/html,application/xhtml+xml' };
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/** A permanent Amplify failure on CreateApp, once: the run rolls back and ends failed. */
function failCreateAppOnce(h: Harness): void {
  h.sandbox.amplify.faults.add({
    method: 'POST',
    path: /^\/apps$/,
    status: 400,
    errorType: 'BadRequestException',
    message: 'Invalid repository for the app',
    times: 1,
  });
}

async function signIn(app: Pick<Hono, 'request'>): Promise<string> {
  const response = await app.request('/dashboard/login', {
    method: 'POST',
    headers: { ...FORM, origin: 'http://localhost' },
    body: new URLSearchParams({ token: TOKEN, next: '/dashboard' }).toString(),
  });
  const cookie = response.headers.get('set-cookie') ?? '';

  return cookie.split(';')[0] ?? '';
}

function csrfOf(page: string): string {
  return /name="csrf" value="([^"]+)"/.exec(page)?.[1] ?? '';
}

/** `data-state` → class list of every state box in a page's statechart. */
function chartClasses(page: string): Map<string, string> {
  const boxes = new Map<string, string>();
  for (const match of page.matchAll(/<g class="([^"]*)" data-state="([^"]+)"/g)) {
    boxes.set(match[2] ?? '', match[1] ?? '');
  }

  return boxes;
}

describe('dashboard statechart layout', () => {
  it('draws every state of the machine once, with no two boxes overlapping', () => {
    const chart = layoutChart(siteCreationMachine);

    const states = chart.boxes.filter((box) => box.kind === 'state');
    const overlap = (a: ChartBox, b: ChartBox) =>
      a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
    const overlapping = states.flatMap((a, index) =>
      states
        .slice(index + 1)
        .filter((b) => overlap(a, b))
        .map((b) => `${a.id} / ${b.id}`),
    );

    expect(overlapping).toEqual([]);
    expect(new Set(states.map((box) => box.id)).size).toBe(states.length);
    for (const path of Object.keys(STEP_OF_STATE)) expect(chart.boxOf(path)).toBe(path);
    for (const final of FINAL_STATES) expect(chart.boxOf(final)).toBe(final);
    expect(chart.boxOf('creatingRepo.grantingTeam.deciding')).toBe('creatingRepo.grantingTeam');
    expect(chart.boxOf('creatingRepo.repoReady')).toBe('creatingRepo.repoReady');
    expect(chart.boxOf('noSuchState')).toBeUndefined();
    expect(chart.edges).toContainEqual({ from: 'creatingSite', to: 'rollingBack' });
    expect(chart.edges).toContainEqual({
      from: 'creatingRepo.creatingRepository',
      to: 'creatingRepo.awaitingContent',
    });
  });
});

describe('dashboard without an admin token', () => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness('pglite', { env: { ADMIN_TOKEN: '' } });
  });

  afterEach(async () => {
    await h?.close();
  });

  it('does not exist: every route answers 404', async () => {
    const paths = ['/dashboard', '/dashboard/login', '/dashboard/assets/dashboard.js'];

    const statuses = await Promise.all(
      paths.map(async (path) => (await h.service.app.request(path, { headers: BROWSER })).status),
    );
    const login = await h.service.app.request('/dashboard/login', {
      method: 'POST',
      headers: FORM,
      body: 'token=anything-at-all-1234567',
    });

    expect(statuses).toEqual([404, 404, 404]);
    expect(login.status).toBe(404);
  });
});

describe.each(databaseKinds)('dashboard on %s', (kind) => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness(kind);
  });

  afterEach(async () => {
    await h?.close();
  });

  it('sends a browser without a session to sign in; a bad Bearer token gets 401', async () => {
    const browser = await h.service.app.request('/dashboard?status=failed', { headers: BROWSER });
    const script = await h.service.app.request('/dashboard/runs.json');
    const wrong = await h.service.app.request('/dashboard', {
      headers: { authorization: 'Bearer not-the-token-at-all' },
    });

    expect(browser.status).toBe(303);
    expect(browser.headers.get('location')).toBe(
      '/dashboard/login?next=%2Fdashboard%3Fstatus%3Dfailed',
    );
    expect(script.status).toBe(401);
    expect(wrong.status).toBe(401);
  });

  it('signs in with the admin token, leaving only a signed HttpOnly SameSite cookie', async () => {
    const response = await h.service.app.request('/dashboard/login', {
      method: 'POST',
      headers: { ...FORM, origin: 'http://localhost' },
      body: new URLSearchParams({ token: TOKEN, next: '/dashboard?status=failed' }).toString(),
    });
    const setCookie = response.headers.get('set-cookie') ?? '';
    const cookie = setCookie.split(';')[0] ?? '';

    const page = await h.service.app.request('/dashboard', { headers: { cookie } });

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/dashboard?status=failed');
    expect(setCookie).toMatch(/^so_dashboard=\d+\.[\w-]{43};/);
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toContain('Path=/dashboard');
    expect(setCookie).not.toContain(TOKEN);
    expect(h.rawLogs.join('\n')).not.toContain(TOKEN);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('operator: tester');
  });

  it('refuses a wrong token at sign-in without setting a cookie', async () => {
    const response = await h.service.app.request('/dashboard/login', {
      method: 'POST',
      headers: FORM,
      body: new URLSearchParams({ token: 'wrong-token-0123456789' }).toString(),
    });

    expect(response.status).toBe(401);
    expect(response.headers.get('set-cookie')).toBeNull();
    expect(await response.text()).toContain('That token is not valid.');
  });

  it('never sends a signed-in browser off the dashboard, whatever "next" says', async () => {
    const nexts = [
      '//evil.example/x',
      'https://evil.example',
      '/runs',
      '/dashboard//evil',
      '/dashboard\r\nSet-Cookie: x=1',
    ];

    const locations = await Promise.all(
      nexts.map(async (next) => {
        const response = await h.service.app.request('/dashboard/login', {
          method: 'POST',
          headers: FORM,
          body: new URLSearchParams({ token: TOKEN, next }).toString(),
        });

        return response.headers.get('location');
      }),
    );

    expect(locations).toEqual(nexts.map(() => '/dashboard'));
  });

  it('ends a session after twelve hours and refuses a forged cookie', async () => {
    let clock = Date.parse('2025-03-01T00:00:00Z');
    const dashboard = new Hono().route(
      '/dashboard',
      createDashboard({
        db: h.db,
        runner: h.service.runner,
        logger: h.service.logger,
        adminTokens: h.config.adminTokens,
        now: () => clock,
      }),
    );
    const cookie = await signIn(dashboard);
    const forged = `so_dashboard=${Math.floor(clock / 1000)}.${'A'.repeat(43)}`;

    const fresh = await dashboard.request('/dashboard', { headers: { cookie } });
    const fake = await dashboard.request('/dashboard', { headers: { cookie: forged } });
    clock += 12 * 60 * 60 * 1000 + 1000;
    const stale = await dashboard.request('/dashboard', { headers: { cookie, ...BROWSER } });

    expect(fresh.status).toBe(200);
    expect(fake.status).toBe(401);
    expect(stale.status).toBe(303);
    expect(stale.headers.get('location')).toMatch(/^\/dashboard\/login\?next=/);
  });

  it('escapes the site name a requester typed, on the list and on the run page', async () => {
    await h.addUser();
    const siteName = `<script>alert("owned")</script><img src=x onerror=alert(1)>`;
    const { body } = await h.submit({ siteName });

    const list = await (await h.service.app.request('/dashboard', { headers: BEARER })).text();
    const run = await (
      await h.service.app.request(`/dashboard/runs/${String(body.runId)}`, { headers: BEARER })
    ).text();

    for (const page of [list, run]) {
      expect(page).not.toContain('<script>alert');
      expect(page).not.toContain('<img src=x');
      expect(page).toContain('&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;');
    }
    expect(run).toContain('<title>&lt;script&gt;alert(&quot;owned&quot;)');
  });

  it('lists runs newest first and filters them by status and by state', async () => {
    await h.addUser();
    const done = await h.submit({ siteName: 'Finished Site' });
    failCreateAppOnce(h);
    const failed = await h.submit({ siteName: 'Broken Site' });
    const get = async (query: string) => {
      const response = await h.service.app.request(`/dashboard${query}`, { headers: BEARER });

      return { status: response.status, page: await response.text() };
    };
    const runIds = (page: string) => [...page.matchAll(/<tr data-run="([^"]+)"/g)].map((m) => m[1]);

    const all = await get('');
    const byStatus = await get('?status=failed');
    const byState = await get('?state=done');
    const badStatus = await get('?status=exploded');
    const badState = await get('?state=%3Cscript%3E');

    expect(all.status).toBe(200);
    expect(runIds(all.page)).toEqual([failed.body.runId, done.body.runId]);
    expect(all.page).toContain('Officer@Agency.gov.sg');
    expect(all.page).toMatch(/<td class="num" title="[^"]+">\d+ s<\/td>/);
    expect(runIds(byStatus.page)).toEqual([failed.body.runId]);
    expect(byStatus.page).toContain('Broken Site');
    expect(runIds(byState.page)).toEqual([done.body.runId]);
    expect(byState.page).toContain('<option value="done" selected>done</option>');
    expect(badStatus.status).toBe(400);
    expect(badState.status).toBe(400);
  });

  it('shows a failed run: its error, the attempts in its history and what it created', async () => {
    await h.addUser();
    h.sandbox.github.faults.add({ method: 'POST', path: '/repos', status: 502, times: 1 });
    failCreateAppOnce(h);
    const { body } = await h.submit({ repoName: 'broken-site' });

    const response = await h.service.app.request(`/dashboard/runs/${String(body.runId)}`, {
      headers: BEARER,
    });
    const page = await response.text();

    expect(response.status).toBe(200);
    expect(page).toContain('data-testid="run-error"');
    expect(page).toContain('Invalid repository for the app');
    expect(page).toMatch(/<tr class="ev-step-failed" data-type="step.failed">[\s\S]*?createApp/);
    const retrying = /data-type="step.retrying">([\s\S]*?)<\/tr>/.exec(page)?.[1] ?? '';
    expect(retrying).toContain('step createRepository');
    expect(retrying).toContain('<td class="num">1</td>');
    expect(retrying).toContain('status 502');
    expect(page).toContain('site-platform/broken-site');
    expect(page).toMatch(/<button type="submit" name="action" value="retry">Retry<\/button>/);
    expect(page).toMatch(/value="cancel" class="danger" disabled/);
  });

  it('draws the statechart with the states the run went through and the one it is in', async () => {
    await h.addUser();
    failCreateAppOnce(h);
    const { body } = await h.submit();

    const page = await (
      await h.service.app.request(`/dashboard/runs/${String(body.runId)}`, { headers: BEARER })
    ).text();
    const boxes = chartClasses(page);

    expect(page).toContain('<svg class="chart"');
    expect(boxes.get('failed')).toBe('chart-state final visited current tone-failed');
    expect(boxes.get('creatingAmplify.creatingApp')).toContain('visited');
    expect(boxes.get('rollingBack.deletingRepo')).toContain('visited');
    expect(boxes.get('authenticating')).toContain('visited');
    expect(boxes.get('done')).toBe('chart-state final');
    expect(boxes.get('creatingAmplify.startingBuilds')).toBe('chart-state');
    expect(boxes.get('creatingRepo')).toBe('chart-group visited');
    expect(page).toContain('marker-end="url(#chart-arrow)"');
  });

  it('refuses a button press without the session CSRF token or from another site', async () => {
    await h.addUser();
    failCreateAppOnce(h);
    const { body } = await h.submit();
    const runId = String(body.runId);
    const cookie = await signIn(h.service.app);
    const page = await (
      await h.service.app.request(`/dashboard/runs/${runId}`, { headers: { cookie } })
    ).text();
    const csrf = csrfOf(page);
    const press = (headers: Record<string, string>, form: Record<string, string>) =>
      h.service.app.request(`/dashboard/runs/${runId}/retry`, {
        method: 'POST',
        headers: { ...FORM, cookie, ...headers },
        body: new URLSearchParams(form).toString(),
      });

    const withoutToken = await press({ origin: 'http://localhost' }, {});
    const wrongToken = await press({ origin: 'http://localhost' }, { csrf: `${csrf}x` });
    const crossSite = await press({ origin: 'https://evil.example' }, { csrf });
    const crossFetch = await press({ 'sec-fetch-site': 'cross-site' }, { csrf });
    await h.settle();

    expect(csrf).toMatch(/^[\w-]{43}$/);
    expect([withoutToken, wrongToken, crossSite, crossFetch].map((r) => r.status)).toEqual([
      403, 403, 403, 403,
    ]);
    const events = await runEvents(h.db, runId);
    expect(events.some((event) => event.type === 'operator.action')).toBe(false);
  });

  it('retries a failed run from its button and records who pressed it', async () => {
    await h.addUser();
    failCreateAppOnce(h);
    const { body } = await h.submit();
    const runId = String(body.runId);
    const cookie = await signIn(h.service.app);
    const page = await (
      await h.service.app.request(`/dashboard/runs/${runId}`, { headers: { cookie } })
    ).text();

    const response = await h.service.app.request(`/dashboard/runs/${runId}/retry`, {
      method: 'POST',
      headers: { ...FORM, cookie, origin: 'http://localhost', 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams({ csrf: csrfOf(page) }).toString(),
    });
    await h.settle();
    const after = await h.service.app.request(
      response.headers.get('location') ?? '/dashboard/none',
      { headers: { cookie } },
    );
    const afterPage = await after.text();

    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toMatch(
      new RegExp(`^/dashboard/runs/${runId}\\?notice=retry&since=\\d+$`),
    );
    expect(afterPage).toContain('Retry started');
    expect(afterPage).toContain('status-succeeded');
    const events = await runEvents(h.db, runId);
    expect(events.find((event) => event.type === 'operator.action')?.actor).toBe('tester');
  });

  it('takes a button press from a script with a Bearer token and no CSRF token', async () => {
    await h.addUser();
    failCreateAppOnce(h);
    const { body } = await h.submit();

    const response = await h.service.app.request(`/dashboard/runs/${String(body.runId)}/rollback`, {
      method: 'POST',
      headers: BEARER,
    });
    await h.settle();
    const refused = await h.service.app.request(`/dashboard/runs/${String(body.runId)}/cancel`, {
      method: 'POST',
      headers: BEARER,
    });

    expect(response.status).toBe(303);
    expect(refused.status).toBe(303);
    expect(refused.headers.get('location')).toContain('problem=not_running');
    const page = await (
      await h.service.app.request(refused.headers.get('location') ?? '', { headers: BEARER })
    ).text();
    expect(page).toContain('Only a run in flight can be cancelled');
  });

  it('keeps a run page polling while the run is in flight, and stops when final', async () => {
    await h.addUser();
    h.sandbox.amplify.faults.add({ method: 'POST', path: /^\/apps$/, delayMs: 1_500, times: 1 });
    const posted = (await (await h.post(h.build())).json()) as { runId: string };
    const url = `/dashboard/runs/${posted.runId}`;
    const statusOf = async () =>
      (await (await h.service.app.request(`${url}/status.json`, { headers: BEARER })).json()) as {
        version: string;
        live: boolean;
        status: string;
      };
    let inFlight = await statusOf();
    for (let tries = 0; tries < 100 && inFlight.status !== 'running'; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      inFlight = await statusOf();
    }

    const runningPage = await (await h.service.app.request(url, { headers: BEARER })).text();
    await h.settle();
    const finished = await statusOf();
    const finishedPage = await (await h.service.app.request(url, { headers: BEARER })).text();

    expect(inFlight).toMatchObject({ status: 'running', live: true });
    expect(runningPage).toContain('data-live="true"');
    expect(runningPage).toContain(`data-poll-url="${url}/status.json"`);
    expect(finished).toMatchObject({ status: 'succeeded', live: false });
    expect(finished.version).not.toBe(inFlight.version);
    expect(finishedPage).toContain('data-live="false"');
  });

  it('loads only its own assets and forbids the browser from fetching any other host', async () => {
    const cookie = await signIn(h.service.app);

    const page = await h.service.app.request('/dashboard', { headers: { cookie } });
    const html = await page.text();
    const css = await h.service.app.request('/dashboard/assets/dashboard.css');
    const js = await h.service.app.request('/dashboard/assets/dashboard.js');
    const loads = [...html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]*)"/g)].map(
      (m) => m[1],
    );

    expect(loads).toEqual([
      'data:,',
      '/dashboard/assets/dashboard.css',
      '/dashboard/assets/dashboard.js',
    ]);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(`${await css.text()}${await js.text()}`).not.toMatch(/https?:\/\/|@import|url\(/);
  });
});
