/**
 * Several service instances on one PostgreSQL database: each run is driven by one instance at a
 * time (a session advisory lock per run), and a run whose instance lost its lock connection, as
 * a crashed instance does, is finished by a peer.
 */
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { startService, type Service } from '../src/service.js';
import { ORG, startHarness, type Harness } from './helpers/harness.js';

const postgres = Boolean(process.env.TEST_DATABASE_URL);

describe.skipIf(!postgres)('instances sharing PostgreSQL (needs TEST_DATABASE_URL)', () => {
  let h: Harness;
  let peer: Service | undefined;

  afterEach(async () => {
    await peer?.close();
    peer = undefined;
    await h?.close();
  });

  async function startPeer(): Promise<Service> {
    const logger = createLogger({ level: 'silent', secrets: [] });

    return startService(h.config, { logger, listen: false, sandbox: h.sandbox, resume: false });
  }

  it('drives a run on one instance only while another keeps looking for unfinished runs', async () => {
    h = await startHarness('postgres', { shareDatabaseUrl: true });
    await h.addUser();
    peer = await startPeer();
    h.sandbox.github.faults.add({ method: 'POST', path: /^\/orgs\/[^/]+\/repos$/, delayMs: 300 });

    const response = await h.post(h.build({ repoName: 'single-driver' }));
    const { runId } = (await response.json()) as { runId: string };
    const sweeps: number[] = [];
    for (let i = 0; i < 10; i += 1) {
      sweeps.push(await peer.driver.resumeUnfinished());
      await new Promise((done) => setTimeout(done, 50));
    }
    await Promise.all([h.settle(), peer.driver.idle()]);

    const starts = await h.db
      .selectFrom('run_events')
      .select('step')
      .where('run_id', '=', runId)
      .where('type', '=', 'step.started')
      .where('step', '=', 'createRepository')
      .execute();
    expect(starts).toHaveLength(1);
    expect(h.sandbox.github.state.listRepos(ORG)).toHaveLength(1);
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(1);
    const run = await h.db.selectFrom('runs').selectAll().where('id', '=', runId).executeTakeFirst();
    expect(run).toMatchObject({ status: 'succeeded' });
  });

  it('finishes on a peer the run of an instance that lost its lock connection', async () => {
    h = await startHarness('postgres', { shareDatabaseUrl: true });
    await h.addUser();
    peer = await startPeer();
    const slow = h.sandbox.amplify.faults.add({ method: 'POST', path: /^\/apps$/, delayMs: 2_000 });
    const response = await h.post(h.build({ repoName: 'handed-over' }));
    const { runId } = (await response.json()) as { runId: string };
    await h.waitForState(runId, 'creatingAmplify');

    // What a crash does to the lock: the connection goes, and the server drops its locks.
    await sql`
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE application_name = 'site-orchestrator-locks' AND datname = current_database()
    `.execute(h.db);
    await h.settle();
    h.sandbox.amplify.faults.remove(slow);
    await peer.driver.resumeUnfinished();
    await peer.driver.idle();

    const run = await h.db.selectFrom('runs').selectAll().where('id', '=', runId).executeTakeFirst();
    expect(run).toMatchObject({ status: 'succeeded', state: 'done' });
    expect(h.sandbox.github.state.listRepos(ORG)).toHaveLength(1);
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(1);
    expect(h.sink.messages).toHaveLength(1);
  });
});

describe.skipIf(!postgres)('runs through the pg-boss queue (needs TEST_DATABASE_URL)', () => {
  let h: Harness;
  let worker: Service | undefined;

  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await h?.close();
  });

  it('lets a webhook-only instance admit runs that a worker instance drives', async () => {
    h = await startHarness('postgres', {
      shareDatabaseUrl: true,
      env: { RUN_DRIVER: 'pgboss', WORKER_CONCURRENCY: '0' },
    });
    await h.addUser();
    const workerConfig = { ...h.config, driver: { kind: 'pgboss' as const, concurrency: 2 } };
    worker = await startService(workerConfig, {
      logger: createLogger({ level: 'silent', secrets: [] }),
      listen: false,
      sandbox: h.sandbox,
    });
    const before = h.logs.length;

    const runIds: string[] = [];
    for (const name of ['queued-one', 'queued-two', 'queued-three']) {
      const response = await h.post(h.build({ repoName: name }));
      runIds.push(((await response.json()) as { runId: string }).runId);
    }
    await Promise.allSettled([h.settle(), worker.driver.idle()]);
    await worker.driver.idle();

    const runs = await h.db.selectFrom('runs').select(['id', 'status']).execute();
    expect(runs.map((run) => run.id).sort()).toEqual(runIds.sort());
    expect(runs.map((run) => run.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(h.sandbox.github.state.listRepos(ORG)).toHaveLength(3);
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(3);
    const drovenHere = h.logs.slice(before).filter((line) => line.event === 'state.entered');
    expect(drovenHere).toEqual([]);
  });
});
