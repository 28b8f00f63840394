/**
 * Duplicate deliveries. FormSG delivers a submission at least once: it retries on any non-2xx
 * answer or timeout for up to a day, each retry freshly signed with the same submission id.
 * However often and however close together a submission arrives, it makes one run and one site.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds } from './helpers/database.js';
import { ORG, defaultAnswers, startHarness, type Harness } from './helpers/harness.js';

interface Answer {
  runId: string;
  submissionId: string;
  duplicate: boolean;
}

async function countRows(h: Harness) {
  const count = async (table: 'runs' | 'sites' | 'repos' | 'deployments') =>
    (await h.db.selectFrom(table).select('id').execute()).length;

  return {
    runs: await count('runs'),
    sites: await count('sites'),
    repos: await count('repos'),
    deployments: await count('deployments'),
  };
}

describe.each(databaseKinds)('duplicate deliveries on %s', (kind) => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness(kind);
    await h.addUser();
  });

  afterEach(async () => {
    await h?.close();
  });

  it('answers ten concurrent deliveries and a late one with one run, site, repository, app and e-mail', async () => {
    const answers = { ...defaultAnswers(), repoName: 'delivered-eleven-times' };
    const submission = h.build(answers);

    const burst = await Promise.all(Array.from({ length: 10 }, () => h.post(submission)));
    const burstAnswers = (await Promise.all(burst.map((r) => r.json()))) as Answer[];
    await h.settle();
    const retry = h.build(answers, { submissionId: submission.submissionId });
    const late = await h.post(retry);
    const lateAnswer = (await late.json()) as Answer;
    await h.settle();

    expect(burst.map((response) => response.status)).toEqual(Array(10).fill(200));
    const runIds = new Set(burstAnswers.map((answer) => answer.runId));
    expect(runIds.size).toBe(1);
    const [runId] = [...runIds];
    expect(burstAnswers.filter((answer) => !answer.duplicate)).toHaveLength(1);
    expect(late.status).toBe(200);
    expect(lateAnswer).toEqual({ runId, submissionId: submission.submissionId, duplicate: true });

    expect(await countRows(h)).toEqual({ runs: 1, sites: 1, repos: 1, deployments: 1 });
    const run = await h.db.selectFrom('runs').selectAll().executeTakeFirstOrThrow();
    expect(run).toMatchObject({ id: runId, status: 'succeeded' });
    const accepted = await h.db
      .selectFrom('run_events')
      .select('id')
      .where('type', '=', 'run.accepted')
      .execute();
    expect(accepted).toHaveLength(1);

    expect(h.sandbox.github.state.listRepos(ORG).map((repo) => repo.name)).toEqual([
      'delivered-eleven-times',
    ]);
    const creations = h.sandbox.github.requests.filter(
      (request) => request.method === 'POST' && request.path === `/orgs/${ORG}/repos`,
    );
    expect(creations).toHaveLength(1);
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(1);
    const appCreations = h.sandbox.amplify.requests.filter((r) => r.operation === 'CreateApp');
    expect(appCreations).toHaveLength(1);

    await h.sink.waitFor(1);
    // Give a second e-mail, were one on its way, the time to arrive.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(h.sink.messages).toHaveLength(1);
  });

  it('answers a delivery that arrives while the run is in flight at once, with the same run', async () => {
    const answers = { ...defaultAnswers(), repoName: 'delivered-mid-run' };
    const submission = h.build(answers);
    const creating = 'creatingRepo.creatingRepository.running';
    h.sandbox.github.faults.add({ method: 'POST', path: `/orgs/${ORG}/repos`, delayMs: 2_000 });
    const first = (await (await h.post(submission)).json()) as Answer;
    await waitForRunState(h, first.runId, creating);

    const again = await h.post(h.build(answers, { submissionId: submission.submissionId }));
    const answer = (await again.json()) as Answer;
    const stateAtAnswer = await runState(h, first.runId);
    await h.settle();

    expect(again.status).toBe(200);
    expect(answer).toMatchObject({ runId: first.runId, duplicate: true });
    // Answered from the runs table, while the run is still held creating its repository.
    expect(stateAtAnswer).toBe(creating);
    expect(await countRows(h)).toEqual({ runs: 1, sites: 1, repos: 1, deployments: 1 });
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(1);
    await h.sink.waitFor(1);
    expect(h.sink.messages).toHaveLength(1);
  });
});

async function runState(h: Harness, runId: string): Promise<string | undefined> {
  const run = await h.db
    .selectFrom('runs')
    .select('state')
    .where('id', '=', runId)
    .executeTakeFirst();

  return run?.state;
}

async function waitForRunState(h: Harness, runId: string, state: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const current = await runState(h, runId);
    if (current === state) return;
    if (Date.now() > deadline) throw new Error(`the run never reached ${state}; it is in ${current}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
