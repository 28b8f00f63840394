/**
 * A failed run leaves the world as it found it, and operators can retry, roll back or cancel.
 * Failures are injected at the emulators' sockets and, for database writes, by a trigger that
 * raises a real database error.
 */
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FaultRule } from '../src/sandbox/faults.js';
import { databaseKinds } from './helpers/database.js';
import { ORG, startHarness, type Harness } from './helpers/harness.js';

const ADMIN = { authorization: 'Bearer test-admin-token-0123456789' };

/** Makes the next write matching `when` fail with a real database error. */
async function failWrites(h: Harness, table: string, when = 'true'): Promise<void> {
  await sql
    .raw(
      `CREATE OR REPLACE FUNCTION injected_failure() RETURNS trigger AS $$
       BEGIN
         IF ${when} THEN RAISE EXCEPTION 'injected failure' USING ERRCODE = 'P0001'; END IF;
         RETURN NEW;
       END $$ LANGUAGE plpgsql`,
    )
    .execute(h.db);
  await sql
    .raw(
      `CREATE TRIGGER injected_failure BEFORE INSERT OR UPDATE ON ${table}
       FOR EACH ROW EXECUTE FUNCTION injected_failure()`,
    )
    .execute(h.db);
}

async function operate(h: Harness, runId: string, action: string, headers = ADMIN) {
  return h.service.app.request(`/runs/${runId}/${action}`, { method: 'POST', headers });
}

type Injection =
  | { service: 'github' | 'amplify'; rule: FaultRule }
  | { service: 'database'; table: string; when?: string };

const github = (method: string, path: RegExp, skip = 0): Injection => ({
  service: 'github',
  rule: { method, path, status: 403, message: 'Resource not accessible by integration', skip },
});
const amplifyRule = (method: string, path: RegExp, skip = 0): FaultRule => ({
  method,
  path,
  status: 400,
  errorType: 'BadRequestException',
  message: 'refused',
  skip,
});
const amplify = (method: string, path: RegExp, skip = 0): Injection => ({
  service: 'amplify',
  rule: amplifyRule(method, path, skip),
});

const STEPS: Array<[string, Injection, RegExp]> = [
  ['repository creation', github('POST', /^\/orgs\/[^/]+\/repos$/), /creating the GitHub repository/],
  ['the staging branch', github('POST', /\/git\/refs$/), /staging and master branches/],
  ['the master branch', github('POST', /\/git\/refs$/, 1), /staging and master branches/],
  ['the team grant', github('PUT', /\/teams\//), /giving the team access/],
  ['the Amplify app', amplify('POST', /^\/apps$/), /creating the Amplify app/],
  ['the master Amplify branch', amplify('POST', /\/branches$/), /connecting the branches/],
  ['the staging Amplify branch', amplify('POST', /\/branches$/, 1), /connecting the branches/],
  ['the master build', amplify('POST', /\/branches\/master\/jobs$/), /starting the first builds/],
  ['the staging build', amplify('POST', /\/branches\/staging\/jobs$/), /starting the first builds/],
  ['the repos row', { service: 'database', table: 'repos' }, /recording the repository/],
  ['the deployments row', { service: 'database', table: 'deployments' }, /recording the deployment/],
  [
    'marking the site ready',
    { service: 'database', table: 'sites', when: "NEW.site_status = 'LAUNCH'" },
    /marking the site as ready/,
  ],
];

describe.each(databaseKinds)('rollback and operator controls on %s', (kind) => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness(kind);
    await h.addUser();
  });

  afterEach(async () => {
    await h?.close();
  });

  it.each(STEPS)(
    'a permanent failure at %s leaves nothing behind and a database that agrees',
    async (_name, injection, stepWords) => {
      if (injection.service === 'github') h.sandbox.github.faults.add(injection.rule);
      if (injection.service === 'amplify') h.sandbox.amplify.faults.add(injection.rule);
      if (injection.service === 'database') await failWrites(h, injection.table, injection.when);

      await h.submit({ repoName: 'short-lived' });

      const { sites, repos, deployments, runs } = await h.rows();
      expect(runs[0]).toMatchObject({ status: 'failed', state: 'failed' });
      expect(sites).toHaveLength(1);
      expect(sites[0]).toMatchObject({ job_status: 'FAILURE', site_status: 'INIT' });
      expect(h.sandbox.github.state.listRepos(ORG)).toEqual([]);
      expect(h.sandbox.amplify.state.listApps()).toEqual([]);
      expect(repos).toEqual([]);
      expect(deployments).toEqual([]);
      const [mail] = await h.sink.waitFor(1);
      expect(mail?.text).toMatch(stepWords);
      expect(h.sink.messages).toHaveLength(1);
    },
  );

  it('never deletes a repository it did not create, even one with the requested name', async () => {
    h.sandbox.github.state.addRepo(ORG, 'existing-site', { description: 'hand made', withCommit: true });

    const { body } = await h.submit({ repoName: 'existing-site' });
    const rollback = await operate(h, String(body.runId), 'rollback');
    await h.settle();

    expect(rollback.status).toBe(202);
    expect(h.sandbox.github.state.getRepo(ORG, 'existing-site')?.description).toBe('hand made');
    expect(h.sandbox.github.requests.filter((r) => r.method === 'DELETE')).toEqual([]);
    // The requester heard the outcome once, from the go that failed.
    expect(h.sink.messages).toHaveLength(1);
  });

  it('ends in needsCleanup and tells operations what is left when an undo fails for good', async () => {
    h.sandbox.amplify.faults.add(amplifyRule('POST', /^\/apps$/));
    h.sandbox.github.faults.add({ method: 'DELETE', path: /^\/repos\//, status: 403 });

    await h.submit({ repoName: 'stuck-repo' });

    const { runs, sites } = await h.rows();
    expect(runs[0]).toMatchObject({ status: 'needs_cleanup', state: 'needsCleanup' });
    expect(sites[0]).toMatchObject({ job_status: 'FAILURE' });
    expect(h.sandbox.github.state.getRepo(ORG, 'stuck-repo')).toBeDefined();
    const mails = await h.sink.waitFor(2);
    const ops = mails.find((mail) => mail.to.includes('ops@example.gov.sg'));
    const requester = mails.find((mail) => !mail.to.includes('ops@example.gov.sg'));
    expect(ops?.text).toContain(`${ORG}/stuck-repo`);
    expect(ops?.text).toContain(String(runs[0]?.id));
    expect(requester?.text).toMatch(/operations team has been told/);
    expect(requester?.text).not.toMatch(/repository was deleted/);
  });

  it('rolls back a needs-cleanup run on request once the fault has cleared', async () => {
    h.sandbox.amplify.faults.add(amplifyRule('POST', /^\/apps$/));
    const deleteFault = h.sandbox.github.faults.add({ method: 'DELETE', path: /^\/repos\//, status: 403 });
    const { body } = await h.submit({ repoName: 'later-cleaned' });
    h.sandbox.github.faults.remove(deleteFault);

    const response = await operate(h, String(body.runId), 'rollback');
    await h.settle();

    expect(response.status).toBe(202);
    const { runs } = await h.rows();
    expect(runs[0]).toMatchObject({ status: 'failed' });
    expect(h.sandbox.github.state.listRepos(ORG)).toEqual([]);
  });

  it('completes a run that a transient outage failed when an operator retries it', async () => {
    const outage = h.sandbox.amplify.faults.add({
      method: 'POST',
      path: /^\/apps$/,
      status: 503,
      errorType: 'DependentServiceFailureException',
    });
    const { body } = await h.submit({ repoName: 'second-try' });
    const runId = String(body.runId);
    expect((await h.rows()).runs[0]).toMatchObject({ status: 'failed' });
    h.sandbox.amplify.faults.remove(outage);

    const response = await operate(h, runId, 'retry');
    await h.settle();

    expect(response.status).toBe(202);
    const { sites, repos, deployments, runs } = await h.rows();
    expect(runs[0]).toMatchObject({ status: 'succeeded', state: 'done' });
    expect(sites).toHaveLength(1);
    expect(sites[0]).toMatchObject({ site_status: 'LAUNCH', job_status: 'READY' });
    expect(h.sandbox.github.state.listRepos(ORG).map((repo) => repo.name)).toEqual(['second-try']);
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(1);
    expect(repos).toHaveLength(1);
    expect(deployments).toHaveLength(1);
    const events = await h.db
      .selectFrom('run_events')
      .selectAll()
      .where('run_id', '=', runId)
      .where('type', '=', 'operator.action')
      .execute();
    expect(events).toEqual([expect.objectContaining({ actor: 'tester', detail: { action: 'retry' } })]);
    const history = await h.db
      .selectFrom('run_events')
      .select(['type', 'state'])
      .where('run_id', '=', runId)
      .orderBy('id')
      .execute();
    const action = history.findIndex((event) => event.type === 'operator.action');
    expect(history[action - 1]).toMatchObject({ type: 'run.finished', state: 'failed' });
    expect(history[action + 1]).toMatchObject({ type: 'state.entered', state: 'reopening.running' });
    const mails = await h.sink.waitFor(2);
    expect(mails.map((mail) => mail.subject)).toEqual([
      expect.stringMatching(/could not create/),
      expect.stringMatching(/ready|live|created/i),
    ]);
  });

  it('cancels a run in flight and rolls back what it created', async () => {
    h.sandbox.amplify.faults.add({ method: 'POST', path: /^\/apps$/, delayMs: 1_500 });
    const response = await h.post(h.build({ repoName: 'cancelled-site' }));
    const { runId } = (await response.json()) as { runId: string };
    await h.waitForState(runId, 'creatingAmplify');

    const cancel = await operate(h, runId, 'cancel');
    await h.settle();

    expect(cancel.status).toBe(202);
    const { runs, sites } = await h.rows();
    expect(runs[0]).toMatchObject({ status: 'failed' });
    expect(sites[0]).toMatchObject({ job_status: 'FAILURE' });
    expect(h.sandbox.github.state.listRepos(ORG)).toEqual([]);
    expect(h.sandbox.amplify.state.listApps()).toEqual([]);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).toMatch(/cancelled/);
    expect(mail?.text).toMatch(/Amplify app was deleted/);
    expect(mail?.text).toMatch(/repository was deleted/);
  });

  it('cancels at once a run that waits to retry', async () => {
    h.sandbox.amplify.faults.add({
      method: 'POST',
      path: /^\/apps$/,
      status: 503,
      errorType: 'DependentServiceFailureException',
      headers: { 'retry-after': '30' },
    });
    const response = await h.post(h.build({ repoName: 'waiting-site' }));
    const { runId } = (await response.json()) as { runId: string };
    await h.waitForState(runId, 'creatingAmplify.creatingApp.waiting');

    const started = Date.now();
    await operate(h, runId, 'cancel');
    await h.settle();

    expect(Date.now() - started).toBeLessThan(10_000);
    expect((await h.rows()).runs[0]).toMatchObject({ status: 'failed' });
    expect(h.sandbox.github.state.listRepos(ORG)).toEqual([]);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).not.toMatch(/Amplify app was deleted/);
  });

  it('refuses operator actions without a valid token, and on runs in the wrong state', async () => {
    const { body } = await h.submit();
    const runId = String(body.runId);

    const anonymous = await operate(h, runId, 'retry', { authorization: 'Bearer wrong-token-wrong-token' });
    const done = await operate(h, runId, 'retry');
    const missing = await operate(h, '00000000-0000-0000-0000-000000000000', 'cancel');

    const badLimit = await h.service.app.request('/runs?limit=-5', { headers: ADMIN });

    expect(badLimit.status).toBe(400);
    expect(anonymous.status).toBe(401);
    expect(done.status).toBe(409);
    expect(missing.status).toBe(404);
  });
});
