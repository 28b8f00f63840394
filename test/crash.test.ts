/**
 * Crash recovery. The service runs as a child process (`src/cli.ts serve`) with the database,
 * the emulators and the SMTP sink outside it. Runs are steered into chosen states, the child is
 * killed with SIGKILL, started again on the same database, and every submission must end in a
 * final state with exactly what it asked for: one repository, one Amplify app, one set of rows
 * and one outcome e-mail (none of them when it failed). How runs are steered and held in a
 * state is told in test/helpers/crash-world.ts.
 *
 * PostgreSQL plays a run into every state the machine can be saved in, over three lives of the
 * child; PGlite, whose child starts cost more, plays a sample in one.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { claimRun } from '../db/runs.repository.js';
import { siteCreationMachine } from '../machines/site-creation.machine.js';
import { generateObjectId } from '../src/formsg/test-submission.js';
import type { FaultRule } from '../src/sandbox/faults.js';
import { startService, type Service } from '../src/service.js';
import {
  CrashWorld,
  ORG,
  REQUESTER,
  repoPath,
  teamGrant,
  type Fault,
  type PlannedRun,
  type Target,
} from './helpers/crash-world.js';
import { databaseKinds } from './helpers/database.js';
import { startHarness, type Harness } from './helpers/harness.js';

const postgres = Boolean(process.env.TEST_DATABASE_URL);

/** Longer than any test: a held call never comes back while the test looks. */
const HOLD_MS = 600_000;

const APPS = /^\/apps$/;
const APP = /^\/apps\/[^/]+$/;
const APP_BRANCHES = /^\/apps\/[^/]+\/branches$/;
const APP_JOBS = /^\/apps\/[^/]+\/branches\/[^/]+\/jobs$/;
const ORG_REPOS = new RegExp(`^/orgs/${ORG}/repos$`);
const refOfMain = (run: PlannedRun) => `${repoPath(run)}/git/ref/heads/main`;
const refs = (run: PlannedRun) => `${repoPath(run)}/git/refs`;

/** A fault on one run's own repository path (matched whole). */
const github = (
  method: string,
  path: (run: PlannedRun) => string,
  rule: Partial<FaultRule>,
): Fault => ({
  at: 'github',
  shared: false,
  rule: (run) => ({ method, path: new RegExp(`^${path(run)}$`), ...rule }),
});
const githubShared = (method: string, path: RegExp, rule: Partial<FaultRule>): Fault => ({
  at: 'github',
  shared: true,
  rule: () => ({ method, path, ...rule }),
});
const amplifyShared = (method: string, path: RegExp, rule: Partial<FaultRule>): Fault => ({
  at: 'amplify',
  shared: true,
  rule: () => ({ method, path, ...rule }),
});

const unavailable = { status: 503, times: 1 };
const amplifyDown = { status: 500, errorType: 'InternalFailureException', times: 1 };
const held = { delayMs: HOLD_MS, times: 1 };

/**
 * Every target. Together they put a run in every state the machine can be saved in (the test
 * checks that against the machine itself); `pglite: true` marks the sample run on PGlite.
 */
const TARGETS: Target[] = [
  { state: 'accepted', flow: 'ok', hold: 'freeze', pglite: true },
  { state: 'validating', flow: 'ok', hold: 'freeze' },
  { state: 'checkingUser.running', flow: 'ok', hold: 'freeze' },
  { state: 'checkingUser.waiting', flow: 'ok', hold: 'freeze', fault: { at: 'users-read' } },
  { state: 'creatingSite.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingSite.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: { at: 'database', write: 'sites:INSERT' },
  },
  { state: 'creatingRepo.creatingRepository.running', flow: 'ok', hold: 'freeze', pglite: true },
  {
    state: 'creatingRepo.creatingRepository.running',
    flow: 'ok',
    hold: 'call',
    fault: githubShared('POST', ORG_REPOS, held),
  },
  {
    state: 'creatingRepo.creatingRepository.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: githubShared('POST', ORG_REPOS, unavailable),
  },
  { state: 'creatingRepo.awaitingContent.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingRepo.awaitingContent.running',
    flow: 'ok',
    hold: 'call',
    fault: github('GET', refOfMain, held),
    pglite: true,
  },
  {
    state: 'creatingRepo.awaitingContent.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: github('GET', refOfMain, unavailable),
  },
  { state: 'creatingRepo.creatingBranches.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingRepo.creatingBranches.running',
    flow: 'ok',
    hold: 'call',
    fault: github('POST', refs, held),
  },
  {
    state: 'creatingRepo.creatingBranches.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: github('POST', refs, unavailable),
  },
  {
    state: 'creatingRepo.creatingBranches.waiting',
    flow: 'ok',
    hold: 'wait',
    fault: github('POST', refs, { ...unavailable, headers: { 'retry-after': '4' } }),
    pglite: true,
  },
  { state: 'creatingRepo.grantingTeam.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingRepo.grantingTeam.running',
    flow: 'ok',
    hold: 'call',
    fault: github('PUT', teamGrant, held),
    pglite: true,
  },
  {
    state: 'creatingRepo.grantingTeam.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: github('PUT', teamGrant, unavailable),
  },
  { state: 'creatingRepo.recordingRepo.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingRepo.recordingRepo.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: { at: 'database', write: 'repos:INSERT' },
    pglite: true,
  },
  { state: 'creatingAmplify.creatingApp.running', flow: 'ok', hold: 'freeze', pglite: true },
  {
    state: 'creatingAmplify.creatingApp.running',
    flow: 'ok',
    hold: 'call',
    fault: amplifyShared('POST', APPS, held),
    pglite: true,
  },
  {
    state: 'creatingAmplify.creatingApp.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: amplifyShared('POST', APPS, amplifyDown),
  },
  { state: 'creatingAmplify.creatingBranches.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingAmplify.creatingBranches.running',
    flow: 'ok',
    hold: 'call',
    fault: amplifyShared('POST', APP_BRANCHES, held),
  },
  {
    state: 'creatingAmplify.creatingBranches.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: amplifyShared('POST', APP_BRANCHES, amplifyDown),
  },
  { state: 'creatingAmplify.startingBuilds.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingAmplify.startingBuilds.running',
    flow: 'ok',
    hold: 'call',
    fault: amplifyShared('GET', APP_JOBS, held),
  },
  {
    state: 'creatingAmplify.startingBuilds.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: amplifyShared('GET', APP_JOBS, amplifyDown),
  },
  { state: 'creatingAmplify.recordingDeployment.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'creatingAmplify.recordingDeployment.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: { at: 'database', write: 'deployments:INSERT' },
  },
  { state: 'completing.running', flow: 'ok', hold: 'freeze' },
  {
    state: 'completing.waiting',
    flow: 'ok',
    hold: 'freeze',
    fault: { at: 'database', write: 'sites:UPDATE' },
  },
  { state: 'notifyingSuccess.running', flow: 'ok', hold: 'freeze', pglite: true },
  { state: 'notifyingSuccess.waiting', flow: 'ok', hold: 'freeze', fault: { at: 'smtp' } },
  { state: 'done', flow: 'ok', hold: 'none', pglite: true },

  { state: 'notifyingRejection.running', flow: 'unregistered', hold: 'freeze' },
  {
    state: 'notifyingRejection.waiting',
    flow: 'unregistered',
    hold: 'freeze',
    fault: { at: 'smtp' },
  },
  { state: 'failed', flow: 'unregistered', hold: 'none' },

  { state: 'rollingBack.deletingApp.running', flow: 'rollback', hold: 'freeze' },
  {
    state: 'rollingBack.deletingApp.running',
    flow: 'rollback',
    hold: 'call',
    fault: amplifyShared('DELETE', APP, held),
  },
  {
    state: 'rollingBack.deletingApp.waiting',
    flow: 'rollback',
    hold: 'freeze',
    fault: amplifyShared('DELETE', APP, amplifyDown),
  },
  { state: 'rollingBack.deletingRepo.running', flow: 'rollback', hold: 'freeze' },
  {
    state: 'rollingBack.deletingRepo.running',
    flow: 'rollback',
    hold: 'call',
    fault: github('DELETE', repoPath, held),
    pglite: true,
  },
  {
    state: 'rollingBack.deletingRepo.waiting',
    flow: 'rollback',
    hold: 'freeze',
    fault: github('DELETE', repoPath, unavailable),
  },
  { state: 'rollingBack.markingFailed.running', flow: 'rollback', hold: 'freeze', pglite: true },
  {
    state: 'rollingBack.markingFailed.waiting',
    flow: 'rollback',
    hold: 'freeze',
    fault: { at: 'database', write: 'sites:UPDATE' },
  },
  { state: 'notifyingFailure.running', flow: 'rollback', hold: 'freeze' },
  { state: 'notifyingFailure.waiting', flow: 'rollback', hold: 'freeze', fault: { at: 'smtp' } },
  { state: 'failed', flow: 'rollback', hold: 'none', pglite: true },

  { state: 'notifyingOps.running', flow: 'cleanup', hold: 'freeze', pglite: true },
  { state: 'notifyingOps.waiting', flow: 'cleanup', hold: 'freeze', fault: { at: 'smtp' } },
  { state: 'needsCleanup', flow: 'cleanup', hold: 'none', pglite: true },

  {
    // Killed before the run met the permanent fault, which is gone after the restart: the
    // run succeeds, and must not have begun a rollback (deleted the repository, sent a
    // failure e-mail) that its saved state never recorded.
    state: 'creatingAmplify.creatingApp.running',
    flow: 'rollback',
    ends: 'ok',
    hold: 'freeze',
    pglite: true,
  },

  { state: 'reopening.running', flow: 'reopen', hold: 'freeze' },
  {
    state: 'reopening.waiting',
    flow: 'reopen',
    hold: 'freeze',
    // The first update of the site is the first go's FAILURE, the second the reopening.
    fault: { at: 'database', write: 'sites:UPDATE', nth: 2 },
  },
];

/**
 * The states a run can be saved in, read from the machine: every leaf, except the ones no
 * snapshot ever shows. Those are named here, so a new state must be covered or named.
 */
function savedStates(): string[] {
  const neverSaved = new Set([
    'starting', // left at once by an eventless transition
    'authenticating', // the webhook's half runs in memory; only `accepted` is saved
    'rejected', // answered 400; nothing is recorded
    'duplicate', // duplicates are answered from the runs table; no machine is started
    'creatingRepo.repoReady', // final children: the parent's onDone leaves at once
    'creatingAmplify.appReady',
    'rollingBack.rolledBack',
  ]);
  const leaves: string[] = [];
  const walk = (node: typeof siteCreationMachine.root) => {
    const children = Object.values(node.states);
    if (children.length === 0) {
      const path = node.path.join('.');
      const eventless = node.config.always !== undefined;
      if (!eventless && !neverSaved.has(path)) leaves.push(path);
      if (neverSaved.has(path)) neverSaved.delete(path);

      return;
    }
    for (const child of children) walk(child);
  };
  walk(siteCreationMachine.root);
  // A name that no longer exists in the machine is a stale exclusion.
  expect([...neverSaved]).toEqual([]);

  return leaves;
}

describe('crash recovery of the service process', () => {
  let world: CrashWorld | undefined;

  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  it.skipIf(!postgres)(
    'on PostgreSQL, SIGKILL in every state the machine can be saved in, then a restart, leaves each submission exactly what it asked for',
    async () => {
      world = await CrashWorld.start('postgres');

      await world.play(TARGETS, 3);

      const killedIn = world.killedIn;
      const uncovered = savedStates().filter((state) => !killedIn.has(state));
      expect(uncovered, 'states no kill happened in').toEqual([]);
      expect(await world.wholeness()).toEqual([]);
    },
    240_000,
  );

  it(
    'on PGlite, SIGKILL in a sample of states (calls in flight, saved steps, a backoff wait, final states), then a restart, leaves each submission exactly what it asked for',
    async () => {
      world = await CrashWorld.start('pglite');
      const sample = TARGETS.filter((target) => target.pglite);

      await world.play(sample, 1);

      const killedIn = world.killedIn;
      const uncovered = sample.filter((target) => !killedIn.has(target.state));
      expect(uncovered.map((target) => target.state)).toEqual([]);
      expect(await world.wholeness()).toEqual([]);
    },
    180_000,
  );
});

const unknownVersion = "a restart with code that does not know a run's machine version, on %s";

describe.each(databaseKinds)(unknownVersion, (kind) => {
  const admin = { authorization: 'Bearer test-admin-token-0123456789' };
  let h: Harness | undefined;
  let restarted: Service | undefined;

  afterEach(async () => {
    await restarted?.close();
    restarted = undefined;
    await h?.close();
    h = undefined;
  });

  it('keeps the run, reports it once in the log, and shows it on GET /runs/:id as not resumable', async () => {
    h = await startHarness(kind);
    const runId = randomUUID();
    const submissionId = generateObjectId();
    const state = 'creatingRepo.creatingRepository.running';
    await claimRun(h.db, {
      id: runId,
      submissionId,
      formId: h.formId,
      machineVersion: 'site-creation@0',
      state,
      snapshot: { status: 'active', value: { creatingRepo: { creatingRepository: 'running' } } },
      requesterEmail: REQUESTER,
      siteName: 'A Site From Older Code',
    });
    await h.service.close();

    restarted = await startService(h.config, {
      logger: h.service.logger,
      listen: false,
      sandbox: h.sandbox,
      database: { db: h.db, kind },
    });
    await restarted.driver.idle();
    // The periodic sweep passes again.
    await restarted.driver.resumeUnfinished();
    await restarted.driver.idle();
    const view = await restarted.app.request(`/runs/${runId}`, { headers: admin });
    const listed = await restarted.app.request('/runs?status=running', { headers: admin });
    const retry = await restarted.app.request(`/runs/${runId}/retry`, {
      method: 'POST',
      headers: admin,
    });

    const reports = h.logs.filter((line) => line.runId === runId && line.level === 50);
    expect(reports).toEqual([
      expect.objectContaining({
        msg: 'run left unresumed: its machine version is unknown to this code',
        machineVersion: 'site-creation@0',
        submissionId,
      }),
    ]);
    expect(view.status).toBe(200);
    const body = (await view.json()) as { history: Array<{ type: string }> };
    expect(body).toMatchObject({
      id: runId,
      state,
      status: 'running',
      machineVersion: 'site-creation@0',
      resumable: false,
    });
    expect(body.history.filter((event) => event.type === 'run.unresumable')).toHaveLength(1);
    const { runs } = (await listed.json()) as { runs: Array<{ id: string }> };
    expect(runs.map((run) => run.id)).toContain(runId);
    expect(retry.status).toBe(409);
    expect(await retry.json()).toMatchObject({ error: 'unknown_version' });
    expect(h.sandbox.github.requests).toEqual([]);
  });
});
