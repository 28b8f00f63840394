/**
 * `GET /metrics`: Prometheus text, fed by the runner's history and the webhook's answers,
 * behind the admin token. The registry on its own first, then the whole service through
 * `app.request()`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, PROMETHEUS_CONTENT_TYPE } from '../src/metrics.js';
import { databaseKinds } from './helpers/database.js';
import { startHarness, type Harness } from './helpers/harness.js';

const TOKEN = 'test-admin-token-0123456789';

/** A sample line: a metric name, optional labels, and a number. */
const SAMPLE = /^[a-z_][a-z0-9_]*(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/;

/** The value of the sample with exactly this name and these labels, when present. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));

  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('the metrics registry', () => {
  it('renders counters and cumulative histogram buckets in Prometheus text format', () => {
    const metrics = createMetrics();

    metrics.observeRun('run-1', [
      { type: 'step.retrying', step: 'createApp', attempt: 1, durationMs: 40 },
      { type: 'step.succeeded', step: 'createApp', attempt: 2, durationMs: 120 },
      { type: 'run.finished', state: 'done', detail: { status: 'succeeded' } },
    ]);
    metrics.countWebhookAnswer(200);
    metrics.countWebhookAnswer(400);
    metrics.countWebhookAnswer(400);
    const text = metrics.render();

    const duration = 'site_orchestrator_step_duration_seconds';
    const ok = 'step="createApp",outcome="succeeded"';
    expect(sample(text, `${duration}_bucket{${ok},le="0.1"}`)).toBe(0);
    expect(sample(text, `${duration}_bucket{${ok},le="0.25"}`)).toBe(1);
    expect(sample(text, `${duration}_bucket{${ok},le="120"}`)).toBe(1);
    expect(sample(text, `${duration}_bucket{${ok},le="+Inf"}`)).toBe(1);
    expect(sample(text, `${duration}_sum{${ok}}`)).toBe(0.12);
    expect(sample(text, `${duration}_count{${ok}}`)).toBe(1);
    expect(sample(text, `${duration}_count{step="createApp",outcome="retrying"}`)).toBe(1);
    expect(sample(text, 'site_orchestrator_step_retries_total{step="createApp"}')).toBe(1);
    expect(
      sample(text, 'site_orchestrator_runs_finished_total{state="done",status="succeeded"}'),
    ).toBe(1);
    expect(sample(text, 'site_orchestrator_webhook_responses_total{status="400"}')).toBe(2);
    expect(text).toContain(`# TYPE ${duration} histogram\n`);
    expect(text).toContain('# TYPE site_orchestrator_step_retries_total counter\n');
    for (const line of text.trimEnd().split('\n')) {
      if (!line.startsWith('#')) expect(line).toMatch(SAMPLE);
    }
  });

  it('skips the duration of a step whose start was not seen, but still counts its retry', () => {
    const metrics = createMetrics();

    metrics.observeRun('run-1', [{ type: 'step.retrying', step: 'startBuilds', attempt: 1 }]);
    const text = metrics.render();

    expect(sample(text, 'site_orchestrator_step_retries_total{step="startBuilds"}')).toBe(1);
    expect(text).not.toContain('step_duration_seconds_count');
  });

  it('escapes quotes, backslashes and line feeds in label values', () => {
    const metrics = createMetrics();

    metrics.observeRun('run-1', [
      { type: 'run.finished', state: 'odd"state\\with\nbreak', detail: { status: 'failed' } },
    ]);
    const text = metrics.render();

    expect(text).toContain('{state="odd\\"state\\\\with\\nbreak",status="failed"} 1\n');
  });
});

describe.each(databaseKinds)('GET /metrics on %s', (kind) => {
  let h: Harness;

  afterEach(async () => {
    await h?.close();
  });

  const scrape = (token?: string) =>
    h.service.app.request('/metrics', {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });

  it('counts finished runs, step durations, retries and webhook answers', async () => {
    h = await startHarness(kind);
    await h.addUser();
    h.sandbox.amplify.faults.add({ method: 'POST', path: /^\/apps$/, status: 503, times: 1 });
    await h.submit();
    await h.post(h.build({}, { webhookUrl: 'https://elsewhere.example/sites' }));

    const response = await scrape(TOKEN);
    const text = await response.text();

    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE);
    expect(
      sample(text, 'site_orchestrator_runs_finished_total{state="done",status="succeeded"}'),
    ).toBe(1);
    expect(sample(text, 'site_orchestrator_step_retries_total{step="createApp"}')).toBe(1);
    const created = 'step="createRepository",outcome="succeeded"';
    expect(sample(text, `site_orchestrator_step_duration_seconds_count{${created}}`)).toBe(1);
    expect(sample(text, 'site_orchestrator_webhook_responses_total{status="200"}')).toBe(1);
    expect(sample(text, 'site_orchestrator_webhook_responses_total{status="400"}')).toBe(1);
  });

  it('counts the webhook\'s answer to a body that is too large', async () => {
    h = await startHarness(kind);

    await h.service.app.request('/sites', { method: 'POST', body: 'x'.repeat(3 * 1024 * 1024) });
    const text = await (await scrape(TOKEN)).text();

    expect(sample(text, 'site_orchestrator_webhook_responses_total{status="413"}')).toBe(1);
  });

  it('answers 401 without the admin token, and leaves the scrape uncounted', async () => {
    h = await startHarness(kind);

    const anonymous = await scrape();
    const wrong = await scrape('not-the-admin-token-at-all');
    const text = await (await scrape(TOKEN)).text();

    expect(anonymous.status).toBe(401);
    expect(wrong.status).toBe(401);
    expect(text).not.toContain('site_orchestrator_webhook_responses_total{');
  });

  it('does not exist when no admin token is configured', async () => {
    h = await startHarness(kind, { env: { ADMIN_TOKEN: '' } });

    const response = await scrape(TOKEN);

    expect(response.status).toBe(404);
  });
});
