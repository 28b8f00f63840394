import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../db/database.js';
import { UNIQUE_VIOLATION, toDatabaseError } from '../db/errors.js';
import { migrateToLatest } from '../db/migrate.js';
import {
  deleteDeploymentBySite,
  findDeploymentBySite,
  upsertDeployment,
} from '../db/deployments.repository.js';
import { deleteRepoBySite, findRepoBySite, upsertRepo } from '../db/repos.repository.js';
import {
  appendRunEvents,
  claimRun,
  findMail,
  findRun,
  listRuns,
  listUnfinishedRuns,
  recordMail,
  runEvents,
  saveRunProgress,
  type RunClaim,
} from '../db/runs.repository.js';
import { jsonb } from '../db/schema.js';
import {
  findSite,
  findSiteBySubmission,
  insertSite,
  setSiteStatus,
} from '../db/sites.repository.js';
import { addUser, findUserByEmail, listUsers } from '../db/users.repository.js';
import { PermanentError, TransientError, ValidationError } from '../src/errors.js';
import { createTestDatabase, databaseKinds, type TestDatabase } from './helpers/database.js';

function runClaim(overrides: Partial<RunClaim> = {}): RunClaim {
  return {
    id: randomUUID(),
    submissionId: `sub-${randomUUID()}`,
    formId: 'form-1',
    machineVersion: 'v1',
    state: 'accepted',
    snapshot: { value: 'accepted', context: { attempts: [1, 2] } },
    requesterEmail: 'officer@agency.gov.sg',
    siteName: 'My Site',
    ...overrides,
  };
}

describe.each(databaseKinds)('the database layer on %s', (kind) => {
  let t: TestDatabase;

  beforeEach(async () => {
    t = await createTestDatabase(kind);
  });

  afterEach(async () => {
    await t?.close();
  });

  async function newSite(submissionId = `sub-${randomUUID()}`) {
    const user = await addUser(t.db, `${randomUUID()}@agency.gov.sg`);

    return insertSite(t.db, {
      name: 'My Site',
      creatorId: user.id,
      submissionId,
      agency: 'Agency',
      pointOfContact: 'Pat',
    });
  }

  it('applies every migration, and applying them again changes nothing', async () => {
    const tables = await t.db.introspection.getTables();

    const again = await migrateToLatest(t.db);

    expect(tables.map((table) => table.name).sort()).toEqual([
      'deployments',
      'mails',
      'repos',
      'run_events',
      'runs',
      'sites',
      'users',
    ]);
    expect(again).toEqual([]);
  });

  it('finds a user by e-mail whatever its case and surrounding spaces', async () => {
    const added = await addUser(t.db, 'Officer@Agency.gov.sg');

    const found = await findUserByEmail(t.db, '  officer@AGENCY.gov.sg ');

    expect(found).toEqual(added);
    expect(found?.email).toBe('Officer@Agency.gov.sg');
  });

  it('returns the existing user when the same address is added in another case', async () => {
    const first = await addUser(t.db, 'officer@agency.gov.sg');

    const second = await addUser(t.db, ' OFFICER@agency.gov.sg');

    expect(second.id).toBe(first.id);
    expect(await listUsers(t.db)).toHaveLength(1);
  });

  it('refuses to add a user without an @', async () => {
    const adding = addUser(t.db, '   ');

    await expect(adding).rejects.toBeInstanceOf(ValidationError);
  });

  it('returns ids as numbers and timestamps as dates', async () => {
    const user = await addUser(t.db, 'officer@agency.gov.sg');

    const { count } = await t.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll().as('count'))
      .executeTakeFirstOrThrow();

    expect(typeof user.id).toBe('number');
    expect(user.created_at).toBeInstanceOf(Date);
    expect(count).toBe(1);
  });

  it('returns the existing site when the same submission is inserted again', async () => {
    const first = await newSite('sub-1');
    const user = await addUser(t.db, 'someone@agency.gov.sg');

    const second = await insertSite(t.db, {
      name: 'Another Name',
      creatorId: user.id,
      submissionId: 'sub-1',
      agency: null,
      pointOfContact: null,
    });

    expect(second).toEqual(first);
    expect(await t.db.selectFrom('sites').selectAll().execute()).toHaveLength(1);
    expect(first).toMatchObject({ site_status: 'INIT', job_status: 'RUNNING' });
  });

  it('sets site statuses and bumps updated_at', async () => {
    const site = await newSite();
    const past = new Date('2020-01-01T00:00:00Z');
    await t.db.updateTable('sites').set({ updated_at: past }).where('id', '=', site.id).execute();

    const updated = await setSiteStatus(t.db, site.id, { jobStatus: 'READY' });

    expect(updated).toMatchObject({ site_status: 'INIT', job_status: 'READY' });
    expect(updated.updated_at.getTime()).toBeGreaterThan(past.getTime());
    expect(await findSite(t.db, site.id)).toEqual(updated);
  });

  it('refuses a status outside the closed set', async () => {
    const site = await newSite();

    const update = t.db
      .updateTable('sites')
      .set({ job_status: 'DONE' as 'READY' })
      .where('id', '=', site.id)
      .execute();

    await expect(update).rejects.toMatchObject({ code: '23514', retryable: false });
  });

  it('reports a duplicate submission id as a permanent error with SQLSTATE 23505', async () => {
    const site = await newSite('sub-dup');

    const insert = t.db
      .insertInto('sites')
      .values({ name: 'x', creator_id: site.creator_id, submission_id: 'sub-dup' })
      .execute();

    const error: unknown = await insert.catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ code: UNIQUE_VIOLATION, service: 'database' });
  });

  it('keeps one repository and one deployment per site, replacing them on upsert', async () => {
    const site = await newSite();

    await upsertRepo(t.db, { siteId: site.id, name: 'old', url: 'https://x/old' });
    const repo = await upsertRepo(t.db, { siteId: site.id, name: 'new', url: 'https://x/new' });
    const deployment = await upsertDeployment(t.db, {
      siteId: site.id,
      hostingId: 'app-1',
      stagingUrl: 'https://staging.app-1',
      productionUrl: 'https://master.app-1',
    });

    expect(await findRepoBySite(t.db, site.id)).toEqual(repo);
    expect(repo).toMatchObject({ name: 'new', url: 'https://x/new' });
    expect(await findDeploymentBySite(t.db, site.id)).toEqual(deployment);
  });

  it('reports how many rows an update or a delete touched', async () => {
    const site = await newSite();
    await newSite();
    await upsertRepo(t.db, { siteId: site.id, name: 'r', url: 'https://x/r' });

    const update = await t.db
      .updateTable('sites')
      .set({ job_status: 'FAILURE' })
      .executeTakeFirst();
    const deleted = await deleteRepoBySite(t.db, site.id);
    const deletedAgain = await deleteRepoBySite(t.db, site.id);
    const noDeployment = await deleteDeploymentBySite(t.db, site.id);

    expect(update.numUpdatedRows).toBe(2n);
    expect(deleted).toBe(1);
    expect(deletedAgain).toBe(0);
    expect(noDeployment).toBe(0);
  });

  it('claims a submission once and shows a second claimant the existing run', async () => {
    const first = runClaim();
    const second = runClaim({ submissionId: first.submissionId });

    const claimed = await claimRun(t.db, first);
    const duplicate = await claimRun(t.db, second);

    expect(claimed.claimed).toBe(true);
    expect(claimed.run).toMatchObject({ id: first.id, status: 'running', state: 'accepted' });
    expect(duplicate.claimed).toBe(false);
    expect(duplicate.run.id).toBe(first.id);
    expect(await t.db.selectFrom('runs').selectAll().execute()).toHaveLength(1);
  });

  it('finds a run by its id or by its submission id', async () => {
    const claim = runClaim();
    await claimRun(t.db, claim);

    const byId = await findRun(t.db, claim.id);
    const bySubmission = await findRun(t.db, claim.submissionId);
    const missing = await findRun(t.db, 'nothing-like-it');

    expect(byId?.id).toBe(claim.id);
    expect(bySubmission?.id).toBe(claim.id);
    expect(missing).toBeUndefined();
  });

  it('round-trips jsonb objects, nested arrays and strings as JSON, not as text', async () => {
    const claim = runClaim();
    await claimRun(t.db, claim);
    const site = await newSite();
    const resources = { repo: { name: 'r', ids: [1, 2, 3] }, leftBehind: [] };
    const error = { name: 'NameTakenError', message: 'taken "name"', retryable: false };

    await saveRunProgress(t.db, claim.id, {
      state: 'failed',
      status: 'failed',
      snapshot: { value: 'failed', list: ['a', { b: null }], text: 'é ü "quoted"' },
      siteId: site.id,
      resources,
      error,
      finishedAt: new Date('2030-01-02T03:04:05.678Z'),
    });
    const run = await findRun(t.db, claim.id);
    const types = await t.db
      .selectFrom('runs')
      .select([
        sql<string>`jsonb_typeof(snapshot)`.as('snapshot'),
        sql<string>`jsonb_typeof(resources->'leftBehind')`.as('leftBehind'),
      ])
      .executeTakeFirstOrThrow();

    expect(run).toMatchObject({
      state: 'failed',
      status: 'failed',
      site_id: site.id,
      snapshot: { value: 'failed', list: ['a', { b: null }], text: 'é ü "quoted"' },
      resources,
      error,
      finished_at: new Date('2030-01-02T03:04:05.678Z'),
    });
    expect(types).toEqual({ snapshot: 'object', leftBehind: 'array' });
  });

  it('leaves fields out of a progress save untouched', async () => {
    const claim = runClaim();
    await claimRun(t.db, claim);

    await saveRunProgress(t.db, claim.id, {
      state: 'creatingSite',
      status: 'running',
      snapshot: { value: 'creatingSite' },
    });
    const run = await findRun(t.db, claim.id);

    expect(run).toMatchObject({
      state: 'creatingSite',
      resources: {},
      error: null,
      requester_email: 'officer@agency.gov.sg',
      finished_at: null,
    });
  });

  it('refuses to save progress for a run that does not exist', async () => {
    const save = saveRunProgress(t.db, randomUUID(), {
      state: 'x',
      status: 'running',
      snapshot: {},
    });

    await expect(save).rejects.toBeInstanceOf(PermanentError);
  });

  it('returns run events in the order they were appended', async () => {
    const claim = runClaim();
    await claimRun(t.db, claim);
    const types = Array.from({ length: 12 }, (_, index) => `step.${index}`);

    await appendRunEvents(t.db, claim.id, [
      { type: 'state.entered', state: 'creatingRepo' },
      {
        type: 'step.failed',
        step: 'createRepository',
        attempt: 2,
        durationMs: 12.6,
        error: { name: 'TransientError', retryable: true },
      },
    ]);
    await appendRunEvents(
      t.db,
      claim.id,
      types.map((type) => ({ type, detail: { list: [type] } })),
    );
    await appendRunEvents(t.db, claim.id, [{ type: 'operator.action', actor: 'ops@agency' }]);
    const events = await runEvents(t.db, claim.id);

    expect(events.map((event) => event.type)).toEqual([
      'state.entered',
      'step.failed',
      ...types,
      'operator.action',
    ]);
    expect(events[1]).toMatchObject({
      step: 'createRepository',
      attempt: 2,
      duration_ms: 13,
      error: { name: 'TransientError', retryable: true },
      state: null,
    });
    expect(events[2]?.detail).toEqual({ list: ['step.0'] });
    expect(events[0]?.at).toBeInstanceOf(Date);
    expect(events.at(-1)?.actor).toBe('ops@agency');
  });

  it('lists runs newest first, filtered by status or state, and the unfinished ones', async () => {
    const older = runClaim();
    const newer = runClaim();
    await claimRun(t.db, older);
    await claimRun(t.db, newer);
    await t.db
      .updateTable('runs')
      .set({ created_at: new Date('2020-01-01T00:00:00Z') })
      .where('id', '=', older.id)
      .execute();
    await saveRunProgress(t.db, newer.id, {
      state: 'done',
      status: 'succeeded',
      snapshot: {},
    });

    const all = await listRuns(t.db);
    const succeeded = await listRuns(t.db, { status: 'succeeded' });
    const accepted = await listRuns(t.db, { state: 'accepted' });
    const page = await listRuns(t.db, { limit: 1, offset: 1 });
    const unfinished = await listUnfinishedRuns(t.db);

    expect(all.map((run) => run.id)).toEqual([newer.id, older.id]);
    expect(succeeded.map((run) => run.id)).toEqual([newer.id]);
    expect(accepted.map((run) => run.id)).toEqual([older.id]);
    expect(page.map((run) => run.id)).toEqual([older.id]);
    expect(unfinished.map((run) => run.id)).toEqual([older.id]);
  });

  it('records each kind of mail once per run', async () => {
    const claim = runClaim();
    await claimRun(t.db, claim);
    const mail = { runId: claim.id, kind: 'outcome', messageId: '<m1@x>', recipient: 'a@b.c' };

    const first = await recordMail(t.db, mail);
    const again = await recordMail(t.db, { ...mail, messageId: '<m2@x>' });
    const ops = await recordMail(t.db, { ...mail, kind: 'ops' });

    expect([first, again, ops]).toEqual([true, false, true]);
    expect(await findMail(t.db, claim.id, 'outcome')).toMatchObject({ message_id: '<m1@x>' });
    expect(await findMail(t.db, claim.id, 'success')).toBeUndefined();
  });

  it('keeps committed inserts when concurrent transactions roll back', async () => {
    const user = await addUser(t.db, 'officer@agency.gov.sg');
    const attempts = Array.from({ length: 10 }, (_, index) => index);

    // Regression: kysely-pglite shared one session, so a rollback erased others' commits.
    const outcomes = await Promise.allSettled(
      attempts.map((index) =>
        t.db.transaction().execute(async (trx) => {
          await insertSite(trx, {
            name: `site ${index}`,
            creatorId: user.id,
            submissionId: `concurrent-${index}`,
            agency: null,
            pointOfContact: null,
          });
          await new Promise((resolve) => setTimeout(resolve, 5));
          if (index % 2 === 1) throw new Error('roll this one back');
        }),
      ),
    );
    const sites = await t.db.selectFrom('sites').select('submission_id').execute();

    expect(outcomes.map((outcome) => outcome.status)).toEqual(
      attempts.map((index) => (index % 2 === 1 ? 'rejected' : 'fulfilled')),
    );
    expect(sites.map((site) => site.submission_id).sort()).toEqual([
      'concurrent-0',
      'concurrent-2',
      'concurrent-4',
      'concurrent-6',
      'concurrent-8',
    ]);
  });

  it('refuses to commit a transaction in which a statement failed', async () => {
    const user = await addUser(t.db, 'officer@agency.gov.sg');

    const committing = t.db.transaction().execute(async (trx) => {
      await addUser(trx, 'second@agency.gov.sg');
      await trx
        .insertInto('sites')
        .values({ name: 'x', creator_id: user.id + 1000, submission_id: 's' })
        .execute()
        .catch(() => undefined);
    });

    await expect(committing).rejects.toMatchObject({ code: '25P02', retryable: false });
    expect(await findUserByEmail(t.db, 'second@agency.gov.sg')).toBeUndefined();
  });

  const onPostgres = it.runIf(kind === 'postgres');

  onPostgres('reports a statement timeout as transient (skipped on PGlite: it has no timeouts)', async () => {
    const slow = t.db.transaction().execute(async (trx) => {
      await sql`set local statement_timeout = 20`.execute(trx);
      await sql`select pg_sleep(2)`.execute(trx);
    });

    const error: unknown = await slow.catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ code: '57014', service: 'database' });
  });

  it('rolls back to a savepoint inside a transaction', async () => {
    const trx = await t.db.startTransaction().execute();

    await addUser(trx, 'kept@agency.gov.sg');
    const savepoint = await trx.savepoint('before_second').execute();
    await addUser(savepoint, 'undone@agency.gov.sg');
    const rolledBack = await savepoint.rollbackToSavepoint('before_second').execute();
    await rolledBack.commit().execute();

    const users = await listUsers(t.db);
    expect(users.map((user) => user.email)).toEqual(['kept@agency.gov.sg']);
  });

  it('stores jsonb written through the jsonb helper, arrays included', async () => {
    const claim = runClaim();
    await claimRun(t.db, claim);

    await t.db
      .updateTable('runs')
      .set({ resources: jsonb([1, 'two', { three: 3 }]) })
      .where('id', '=', claim.id)
      .execute();
    const run = await findRun(t.db, claim.id);

    expect(run?.resources).toEqual([1, 'two', { three: 3 }]);
  });
});

describe('PGlite on disk', () => {
  it('keeps its data in a folder another handle can open after release', async () => {
    const t = await createTestDatabase('pglite', { onDisk: true });
    const folder = t.pgliteDir;

    try {
      await addUser(t.db, 'officer@agency.gov.sg');
      await t.release?.();
      const other = await openDatabase({ ...(folder ? { pgliteDir: folder } : {}) });
      await addUser(other.db, 'second@agency.gov.sg');
      await other.close();
      const db = await t.reopen?.();

      expect(folder).toEqual(expect.any(String));
      expect(db).toBe(t.db);
      expect((await listUsers(t.db)).map((user) => user.email)).toEqual([
        'officer@agency.gov.sg',
        'second@agency.gov.sg',
      ]);
    } finally {
      await t.close();
    }
  });
});

describe('database error classification', () => {
  it.each([
    ['40001', 'query', true],
    ['40P01', 'query', true],
    ['08006', 'query', true],
    ['53300', 'connect', true],
    ['EPIPE', 'query', true],
    ['23505', 'query', false],
    ['22P02', 'query', false],
    ['28P01', 'connect', false],
    [undefined, 'connect', true],
    [undefined, 'query', false],
  ] as const)('classifies code %s during %s as retryable: %s', (code, phase, retryable) => {
    const driverError = Object.assign(new Error('from the driver'), code ? { code } : {});

    const error = toDatabaseError(driverError, phase);

    expect(error.retryable).toBe(retryable);
    expect(error.cause).toBe(driverError);
    expect(error.code).toBe(code);
  });
});

describe('PostgreSQL connection faults', () => {
  it('reports an unreachable server as a transient database error', async () => {
    const port = await closedPort();
    const { db, close } = await openDatabase({
      databaseUrl: `postgres://postgres@127.0.0.1:${port}/nothing`,
    });

    const error: unknown = await findSiteBySubmission(db, 'x').catch((caught) => caught);
    await close();

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ code: 'ECONNREFUSED', service: 'database' });
  });
});

/** A loopback port nothing listens on: the OS picks it, we release it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');

  return address.port;
}
