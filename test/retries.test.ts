/**
 * Retries. The emulators fail a share of calls transiently, or some calls for good, through
 * their sockets; the real clients, steps and machine decide what to do. Transient faults are
 * retried with backoff (every run still succeeds, and its history shows each retry);
 * permanent ones fail the run at once, and faults that do not clear fail it after the
 * configured attempts or time. A backoff wait survives a restart and is not started afresh.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunEventRow } from '../db/schema.js';
import type { FaultRule } from '../src/sandbox/faults.js';
import { startService, type Service } from '../src/service.js';
import { databaseKinds } from './helpers/database.js';
import {
  ORG,
  defaultAnswers,
  startHarness,
  type Harness,
  type HarnessOptions,
} from './helpers/harness.js';

const TEMPLATE = `${ORG}/site-template`;

async function historyOf(h: Harness, runId: string): Promise<RunEventRow[]> {
  return h.db
    .selectFrom('run_events')
    .selectAll()
    .where('run_id', '=', runId)
    .orderBy('id')
    .execute();
}

async function runsOf(h: Harness) {
  return h.db.selectFrom('runs').selectAll().orderBy('created_at').execute();
}

const serverErrors = (requests: Array<{ status: number }>) =>
  requests.filter((request) => request.status >= 500).length;

describe.each(databaseKinds)('retries on %s', (kind) => {
  let h: Harness;
  let restarted: Service | undefined;

  async function start(options: HarnessOptions = {}): Promise<Harness> {
    h = await startHarness(kind, options);
    await h.addUser();

    return h;
  }

  afterEach(async () => {
    await restarted?.close();
    restarted = undefined;
    await h?.close();
  });

  it('completes every run when a share of GitHub, Amplify and SMTP calls fail transiently, each failure a retry in the history', async () => {
    await start({ env: { RETRY_MAX_ATTEMPTS: '10' } });
    h.sandbox.github.faults.add({ path: /^\//, status: 503, rate: 0.15 });
    h.sandbox.amplify.faults.add({
      path: /^\//,
      status: 500,
      errorType: 'InternalFailureException',
      rate: 0.15,
    });
    h.sink.failNext(421, 2);

    const posted = await Promise.all(
      Array.from({ length: 4 }, (_, i) => h.post(h.build({ repoName: `flaky-site-${i}` }))),
    );
    await h.settle();

    expect(posted.map((response) => response.status)).toEqual([200, 200, 200, 200]);
    const runs = await runsOf(h);
    expect(runs.map((run) => run.status)).toEqual(Array(4).fill('succeeded'));
    expect(h.sandbox.github.state.listRepos(ORG)).toHaveLength(4);
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(4);
    await h.sink.waitFor(4);
    expect(h.sink.messages).toHaveLength(4);

    const injected =
      serverErrors(h.sandbox.github.requests) + serverErrors(h.sandbox.amplify.requests) + 2;
    expect(serverErrors(h.sandbox.github.requests)).toBeGreaterThan(0);
    expect(serverErrors(h.sandbox.amplify.requests)).toBeGreaterThan(0);
    let retries = 0;
    for (const run of runs) {
      const history = await historyOf(h, run.id);
      const retrying = history.filter((event) => event.type === 'step.retrying');
      retries += retrying.length;
      // A step retried k times succeeded on attempt k + 1, and each retry says why.
      for (const event of history.filter((e) => e.type === 'step.succeeded')) {
        const before = retrying.filter((r) => r.step === event.step).length;
        expect(event.attempt, `${event.step} of ${run.id}`).toBe(before + 1);
      }
      for (const event of retrying) {
        expect(event.error).toMatchObject({ retryable: true });
      }
    }
    expect(retries).toBe(injected);
  });

  const refusals: Array<{ name: string; at: 'github' | 'amplify'; rule: FaultRule; step: string }> =
    [
      {
        name: 'GitHub refuses the repository (403 without retry-after)',
        at: 'github',
        rule: { method: 'POST', path: `/orgs/${ORG}/repos`, status: 403 },
        step: 'createRepository',
      },
      {
        name: 'Amplify refuses the app (400 BadRequestException)',
        at: 'amplify',
        rule: { method: 'POST', path: /^\/apps$/, status: 400, message: 'Bad repository' },
        step: 'createApp',
      },
      {
        name: 'Amplify quota is used up (429 LimitExceededException)',
        at: 'amplify',
        rule: {
          method: 'POST',
          path: /^\/apps$/,
          status: 429,
          errorType: 'LimitExceededException',
        },
        step: 'createApp',
      },
    ];

  it.each(refusals)('fails at once, retrying nothing, when $name', async ({ at, rule, step }) => {
    await start();
    h.sandbox[at].faults.add(rule);

    const { body } = await h.submit({ repoName: 'refused-site' });

    const history = await historyOf(h, String(body.runId));
    expect(history.filter((event) => event.type === 'step.retrying')).toEqual([]);
    const refused = expect.objectContaining({ retryable: false });
    expect(history.filter((event) => event.type === 'step.failed')).toEqual([
      expect.objectContaining({ step, attempt: 1, error: refused }),
    ]);
    const path = rule.path as string | RegExp;
    const calls = h.sandbox[at].requests.filter((request) =>
      request.method === rule.method &&
      (typeof path === 'string' ? request.path === path : path.test(request.path)));
    expect(calls).toHaveLength(1);
    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'failed', state: 'failed' });
    expect(h.sandbox.github.state.listRepos(ORG)).toEqual([]);
    expect(h.sandbox.amplify.state.listApps()).toEqual([]);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.subject).toMatch(/could not/i);
  });

  it('gives up after RETRY_MAX_ATTEMPTS when a fault does not clear, and undoes what it made', async () => {
    await start();
    const attempts = h.config.retry.maxAttempts;
    h.sandbox.amplify.faults.add({
      method: 'POST',
      path: /^\/apps\/[^/]+\/branches$/,
      status: 503,
      errorType: 'ServiceUnavailableException',
    });

    const { body } = await h.submit({ repoName: 'never-branched' });

    const calls = h.sandbox.amplify.requests.filter((r) => r.operation === 'CreateBranch');
    expect(calls).toHaveLength(attempts);
    const history = await historyOf(h, String(body.runId));
    const retrying = history.filter((event) => event.type === 'step.retrying');
    expect(retrying.map((event) => [event.step, event.attempt])).toEqual(
      Array.from({ length: attempts - 1 }, (_, i) => ['ensureAppBranches', i + 1]),
    );
    expect(history.filter((event) => event.type === 'step.failed')).toEqual([
      expect.objectContaining({ step: 'ensureAppBranches', attempt: attempts }),
    ]);
    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'failed' });
    expect(h.sandbox.amplify.state.listApps()).toEqual([]);
    expect(h.sandbox.github.state.listRepos(ORG)).toEqual([]);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).toMatch(/unavailable for too long/);
  });

  it('stops retrying once RETRY_MAX_ELAPSED_MS is spent, attempts left or not', async () => {
    await start({ env: { RETRY_MAX_ATTEMPTS: '1000', RETRY_MAX_ELAPSED_MS: '400' } });
    h.sandbox.github.faults.add({ method: 'POST', path: `/orgs/${ORG}/repos`, status: 502 });

    const { body } = await h.submit({ repoName: 'out-of-time' });

    const history = await historyOf(h, String(body.runId));
    const tries = history.filter((event) => event.step === 'createRepository' &&
      (event.type === 'step.retrying' || event.type === 'step.failed'));
    const failed = tries[tries.length - 1];
    expect(failed).toMatchObject({ type: 'step.failed' });
    expect(tries.length).toBeGreaterThan(2);
    expect(tries.length).toBeLessThan(1000);
    const spent = (failed?.at.getTime() ?? 0) - (tries[0]?.at.getTime() ?? 0);
    expect(spent).toBeGreaterThanOrEqual(400 - 50);
    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'failed' });
  });

  it('resumes a run restored in the middle of a backoff wait, waiting only what remains', async () => {
    await start();
    h.sandbox.github.faults.add({
      method: 'POST',
      path: `/orgs/${ORG}/repos`,
      status: 503,
      headers: { 'retry-after': '3' },
      times: 1,
    });
    const response = await h.post(h.build({ repoName: 'slept-through-a-restart' }));
    const { runId } = (await response.json()) as { runId: string };
    const retryAt = await waitForWaiting(h, runId);

    await h.service.close();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    restarted = await startService(h.config, {
      logger: h.service.logger,
      listen: false,
      sandbox: h.sandbox,
      database: { db: h.db, kind },
    });
    await restarted.driver.idle();

    const history = await historyOf(h, runId);
    const resumed = history.find((event) => event.type === 'run.resumed');
    const retried = history.find((event) =>
      event.type === 'step.started' && event.step === 'createRepository' && event.attempt === 2);
    const resumedAt = resumed?.at.getTime() ?? Number.NaN;
    const retriedAt = retried?.at.getTime() ?? Number.NaN;
    // Restored with part of the three-second wait still to go...
    expect(retryAt - resumedAt).toBeGreaterThan(200);
    // ...it retried when the saved deadline came: not before, and not a fresh wait later.
    expect(retriedAt).toBeGreaterThanOrEqual(retryAt - 20);
    expect(retriedAt).toBeLessThan(retryAt + 500);
    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'succeeded' });
    expect(h.sandbox.github.state.listRepos(ORG)).toHaveLength(1);
  });

  it('polls a repository made from a template until its content is there, then carries on', async () => {
    await start({ template: TEMPLATE, templateReadyDelayMs: 400 });

    const { body } = await h.submit({ repoName: 'from-template' });

    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'succeeded' });
    const refReads = h.sandbox.github.requests.filter(
      (r) => r.method === 'GET' && r.path === `/repos/${ORG}/from-template/git/ref/heads/main`,
    );
    expect(refReads.filter((read) => read.status === 409).length).toBeGreaterThan(1);
    expect(refReads.some((read) => read.status === 200)).toBe(true);
    const history = await historyOf(h, String(body.runId));
    const waited = history.filter((event) => event.step === 'waitForRepoContent');
    expect(waited.map((event) => event.type)).toEqual(['step.started', 'step.succeeded']);
    expect(waited[1]?.duration_ms).toBeGreaterThanOrEqual(300);
  });

  it('retries, as a transient fault, a template repository still empty after TEMPLATE_READY_TIMEOUT_MS', async () => {
    await start({
      template: TEMPLATE,
      templateReadyDelayMs: 900,
      env: { TEMPLATE_READY_TIMEOUT_MS: '300' },
    });

    const { body } = await h.submit({ repoName: 'slow-template' });

    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'succeeded' });
    const history = await historyOf(h, String(body.runId));
    const retrying = history.filter(
      (event) => event.type === 'step.retrying' && event.step === 'waitForRepoContent',
    );
    expect(retrying.length).toBeGreaterThanOrEqual(1);
    expect(retrying[0]?.error).toMatchObject({ code: 'RepositoryNotReady', retryable: true });
    const succeeded = history.find(
      (event) => event.type === 'step.succeeded' && event.step === 'waitForRepoContent',
    );
    expect(succeeded?.attempt).toBe(retrying.length + 1);
    expect(h.sandbox.github.state.listRepos(ORG).map((repo) => repo.name).sort()).toEqual([
      'site-template',
      'slow-template',
    ]);
  });

  it('fails cleanly when a template repository stays empty through every attempt', async () => {
    await start({
      template: TEMPLATE,
      templateReadyDelayMs: 600_000,
      env: { TEMPLATE_READY_TIMEOUT_MS: '150' },
    });

    const { body } = await h.submit({ ...defaultAnswers(), repoName: 'empty-template' });

    const history = await historyOf(h, String(body.runId));
    expect(history.filter((event) => event.type === 'step.failed')).toEqual([
      expect.objectContaining({ step: 'waitForRepoContent', attempt: h.config.retry.maxAttempts }),
    ]);
    const [run] = await runsOf(h);
    expect(run).toMatchObject({ status: 'failed' });
    expect(h.sandbox.github.state.listRepos(ORG).map((repo) => repo.name)).toEqual([
      'site-template',
    ]);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).toMatch(/repository was deleted/);
  });
});

/** Waits until the run is saved in its backoff wait; returns the wait's deadline. */
async function waitForWaiting(h: Harness, runId: string): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const run = await h.db
      .selectFrom('runs')
      .select(['state', 'snapshot'])
      .where('id', '=', runId)
      .executeTakeFirst();
    if (run?.state === 'creatingRepo.creatingRepository.waiting') {
      const context = (run.snapshot as { context: { retry: { retryAt: number } | null } }).context;
      if (context.retry) return context.retry.retryAt;
    }
    if (Date.now() > deadline) throw new Error(`the run never waited; it is in ${run?.state}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
