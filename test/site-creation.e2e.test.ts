/**
 * From a signed, encrypted FormSG submission posted to the Hono app, through the real steps and
 * clients, to the rows, the emulators' repositories and apps, and the e-mails in a real SMTP
 * sink. Runs on PGlite, and on PostgreSQL too when TEST_DATABASE_URL is set.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseKinds } from './helpers/database.js';
import { ORG, REQUESTER, TEAM, WEBHOOK_URL, startHarness, type Harness } from './helpers/harness.js';
import { generateFormKeyPair } from '../src/formsg/test-submission.js';

/** SMTP envelopes may fold the domain's case; mailboxes are compared without it. */
function lower(addresses: string[] | undefined): string[] {
  return (addresses ?? []).map((address) => address.toLowerCase());
}

describe.each(databaseKinds)('site creation end to end on %s', (kind) => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness(kind);
  });

  afterEach(async () => {
    await h?.close();
  });

  it('creates the site, repository, Amplify app, records and e-mail for a registered user', async () => {
    await h.addUser('officer@agency.gov.sg');

    const { response, body, submission } = await h.submit({ repoName: 'my-new-site' });

    expect(response.status).toBe(200);
    expect(body.runId).toEqual(expect.any(String));
    const { sites, repos, deployments, runs } = await h.rows();
    expect(sites).toHaveLength(1);
    expect(sites[0]).toMatchObject({
      site_status: 'LAUNCH',
      job_status: 'READY',
      submission_id: submission.submissionId,
      agency: 'Ministry of Examples',
      point_of_contact: 'Jane Tan',
    });
    const repo = h.sandbox.github.state.getRepo(ORG, 'my-new-site');
    expect(repo).toBeDefined();
    expect(repo?.private).toBe(true);
    expect(Object.keys(h.sandbox.github.state.refs(ORG, 'my-new-site'))).toEqual(
      expect.arrayContaining(['refs/heads/staging', 'refs/heads/master']),
    );
    expect(h.sandbox.github.state.teamPermission(ORG, TEAM, 'my-new-site')).toBe('push');
    expect(repos).toEqual([
      expect.objectContaining({ name: 'my-new-site', url: repo?.htmlUrl }),
    ]);

    const [app] = h.sandbox.amplify.state.listApps();
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(1);
    expect(app?.repository).toBe(repo?.htmlUrl);
    const branches = h.sandbox.amplify.state.branches(app?.appId ?? '');
    expect(branches.map((b) => [b.branchName, b.stage]).sort()).toEqual([
      ['master', 'PRODUCTION'],
      ['staging', 'DEVELOPMENT'],
    ]);
    for (const branch of ['master', 'staging']) {
      const jobs = h.sandbox.amplify.state.jobs(app?.appId ?? '', branch);
      expect(jobs.map((job) => job.jobType)).toEqual(['RELEASE']);
    }
    expect(deployments).toEqual([
      expect.objectContaining({
        hosting_id: app?.appId,
        production_url: `https://master.${app?.defaultDomain}`,
        staging_url: `https://staging.${app?.defaultDomain}`,
      }),
    ]);
    expect(runs[0]).toMatchObject({ status: 'succeeded', state: 'done' });

    const mails = await h.sink.waitFor(1);
    expect(mails).toHaveLength(1);
    expect(lower(mails[0]?.to)).toEqual([REQUESTER.toLowerCase()]);
    expect(mails[0]?.text).toContain(`https://master.${app?.defaultDomain}`);
    expect(mails[0]?.text).toContain(`https://staging.${app?.defaultDomain}`);
  });

  it('answers before any call to GitHub or Amplify is made', async () => {
    await h.addUser();
    h.sandbox.github.faults.add({ path: '/repos', delayMs: 500 });

    const response = await h.post(h.build());
    const githubCallsAtAnswer = h.sandbox.github.requests.length;
    const amplifyCallsAtAnswer = h.sandbox.amplify.requests.length;
    await h.settle();

    expect(response.status).toBe(200);
    expect(githubCallsAtAnswer).toBe(0);
    expect(amplifyCallsAtAnswer).toBe(0);
  });

  it('keeps a ready site ready when the success e-mail cannot be sent', async () => {
    await h.addUser();
    h.sink.failNext(550, 10);

    await h.submit();

    const { sites, runs } = await h.rows();
    expect(sites[0]).toMatchObject({ site_status: 'LAUNCH', job_status: 'READY' });
    expect(runs[0]).toMatchObject({ status: 'succeeded', state: 'done' });
    expect(h.sink.messages).toHaveLength(0);
    const failed = await h.db
      .selectFrom('run_events')
      .selectAll()
      .where('type', '=', 'step.failed')
      .where('step', '=', 'sendSuccessMail')
      .execute();
    expect(failed).toHaveLength(1);
    expect(runs[0]?.resources).toMatchObject({
      undeliveredMail: [{ kind: 'success', error: expect.objectContaining({ status: 550 }) }],
    });
  });

  it('sends the success e-mail once after a passing mail-server refusal', async () => {
    await h.addUser();
    h.sink.failNext(451, 1);

    await h.submit();

    expect(h.sink.messages).toHaveLength(1);
    const { runs } = await h.rows();
    expect(runs[0]).toMatchObject({ status: 'succeeded' });
  });

  it('tells an unknown requester how to register and creates nothing', async () => {
    const { response } = await h.submit({ email: 'stranger@agency.gov.sg' });

    expect(response.status).toBe(200);
    const { sites, runs } = await h.rows();
    expect(sites).toHaveLength(0);
    expect(runs[0]).toMatchObject({ status: 'failed', state: 'failed' });
    expect(h.sandbox.github.state.listRepos(ORG)).toHaveLength(0);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.to).toEqual(['stranger@agency.gov.sg']);
    expect(mail?.text).toMatch(/not a registered user/i);
    expect(mail?.text).toMatch(/administrator/i);
  });

  it('refuses a repository name GitHub would rewrite, naming the field, before creating anything', async () => {
    await h.addUser();

    await h.submit({ repoName: 'my site!' });

    const { sites } = await h.rows();
    expect(sites).toHaveLength(0);
    expect(h.sandbox.github.requests).toHaveLength(0);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).toContain('Repository Name');
    expect(lower(mail?.to)).toEqual([REQUESTER.toLowerCase()]);
  });

  it('fails cleanly when the repository name is taken, leaving the existing repository alone', async () => {
    await h.addUser();
    h.sandbox.github.state.addRepo(ORG, 'taken-name', { description: 'someone else', withCommit: true });

    await h.submit({ repoName: 'taken-name' });

    const { sites, repos, runs } = await h.rows();
    expect(sites[0]).toMatchObject({ job_status: 'FAILURE', site_status: 'INIT' });
    expect(repos).toHaveLength(0);
    expect(runs[0]).toMatchObject({ status: 'failed' });
    expect(h.sandbox.github.state.getRepo(ORG, 'taken-name')?.description).toBe('someone else');
    expect(h.sandbox.amplify.state.listApps()).toHaveLength(0);
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).toContain('taken-name');
    expect(mail?.text).toMatch(/already exists/);
    expect(mail?.text).not.toMatch(/was deleted/);
  });

  it('marks the job FAILURE, undoes the repository and says why when Amplify refuses the app', async () => {
    await h.addUser();
    h.sandbox.amplify.faults.add({
      method: 'POST',
      path: /^\/apps$/,
      status: 400,
      errorType: 'BadRequestException',
      message: 'The repository URL is not supported',
    });

    await h.submit({ repoName: 'doomed-site' });

    const { sites, repos, deployments } = await h.rows();
    expect(sites[0]).toMatchObject({ job_status: 'FAILURE' });
    expect(repos).toHaveLength(0);
    expect(deployments).toHaveLength(0);
    expect(h.sandbox.github.state.getRepo(ORG, 'doomed-site')).toBeUndefined();
    const [mail] = await h.sink.waitFor(1);
    expect(mail?.text).toMatch(/creating the Amplify app/);
    expect(mail?.text).toMatch(/repository was deleted/);
    expect(mail?.text).not.toMatch(/at .*\.ts:\d+/);
  });

  describe('webhook authentication', () => {
    async function expectRejected(response: Response, reason: string) {
      expect(response.status).toBe(400);
      const body = (await response.json()) as { error: string };
      expect(body.error).toBe(reason);
      const { runs, sites } = await h.rows();
      expect(runs).toHaveLength(0);
      expect(sites).toHaveLength(0);
      expect(h.sandbox.github.requests).toHaveLength(0);
    }

    it('rejects a delivery without a signature', async () => {
      const submission = h.build();
      const headers = { 'content-type': 'application/json' };

      const response = await h.post({ headers, body: submission.body });

      await expectRejected(response, 'missing_signature');
    });

    it('rejects a signature made for another URL', async () => {
      const submission = h.build({}, { webhookUrl: 'https://attacker.example/sites' });

      await expectRejected(await h.post(submission), 'bad_signature');
    });

    it('rejects a signature older than five minutes', async () => {
      const submission = h.build({}, { epoch: Date.now() - 6 * 60_000 });

      await expectRejected(await h.post(submission), 'stale_signature');
    });

    it('rejects a body whose ids do not match the signed header', async () => {
      const submission = h.build();
      const other = h.build();
      const body = { data: { ...submission.body.data, submissionId: other.submissionId } };

      await expectRejected(await h.post({ headers: submission.headers, body }), 'mismatched_ids');
    });

    it('rejects answers encrypted for another form key', async () => {
      const stranger = generateFormKeyPair();
      const submission = h.build({}, { formPublicKey: stranger.publicKey });

      await expectRejected(await h.post(submission), 'undecryptable');
    });

    it('verifies against the configured public URL, not the URL the request arrived on', async () => {
      await h.addUser();
      const submission = h.build({}, { webhookUrl: WEBHOOK_URL });

      const response = await h.post(submission);
      await h.settle();

      expect(response.status).toBe(200);
    });
  });
});
