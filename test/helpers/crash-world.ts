/**
 * The world outside a crashing service: a database, the GitHub and Amplify emulators, an SMTP
 * sink and a form key pair, all in the test process, and the service itself as a child process
 * (see child-service.ts) that the world starts, steers runs through, and kills with SIGKILL.
 *
 * A test describes targets: a state a run must be saved in when the child is killed, how the
 * run gets there (its flow and a fault) and how it is kept there (its hold):
 * - `call`: an emulator holds the step's call open, so the child dies mid-call;
 * - `freeze`: the run's saves fail once it has saved the state (crash-holds.ts). Steps wait
 *   for the save of the state that starts them (write-ahead), so the run stops there, as a
 *   kill just after that save would leave it: the state's own step done, nothing after it;
 * - `wait`: a backoff wait whose deadline (`retry-after`) outlasts the kill;
 * - `none`: the run has finished before the kill.
 * `play` spreads the targets over several lives of the child, then starts it a last time and
 * lets it recover; `wholeness` lists every way the world differs from what each submission's
 * outcome calls for.
 */
import type { Kysely } from 'kysely';
import { expect } from 'vitest';
import type { Database } from '../../db/schema.js';
import { addUser } from '../../db/users.repository.js';
import {
  buildTestSubmission,
  generateFormKeyPair,
  generateObjectId,
  type TestSubmission,
} from '../../src/formsg/test-submission.js';
import type { FaultRule } from '../../src/sandbox/faults.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { startChildService, type ChildService } from './child-service.js';
import {
  cancelNextRead,
  clearHolds,
  failWrite,
  freezeAt,
  installCrashHolds,
  type WriteTarget,
} from './crash-holds.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startSmtpSink, type SmtpSink } from './smtp-sink.js';

export type Engine = 'pglite' | 'postgres';

export const ORG = 'site-platform';
export const TEAM = 'site-editors';
export const REQUESTER = 'officer@agency.gov.sg';
const REGION = 'ap-southeast-1';
const WEBHOOK_URL = 'https://sites.example.gov.sg/sites';
const OPS = 'ops@example.gov.sg';
const ADMIN_TOKEN = 'crash-admin-token-0123456789';
const RUN_MARKER = 'site-platform-run';

/**
 * How a run is steered: `ok` succeeds; `unregistered` is refused; `rollback` and `cleanup` are
 * refused for good when the deployment is recorded (so every undo runs), and `cleanup` cannot
 * delete its repository; `reopen` fails at the team grant and is retried by an operator.
 */
export type Flow = 'ok' | 'unregistered' | 'rollback' | 'cleanup' | 'reopen';

const OUTCOMES: Record<Flow, { status: string; mails: string[] }> = {
  ok: { status: 'succeeded', mails: ['success'] },
  unregistered: { status: 'failed', mails: ['rejection'] },
  rollback: { status: 'failed', mails: ['failure'] },
  cleanup: { status: 'needs_cleanup', mails: ['failure', 'ops'] },
  reopen: { status: 'succeeded', mails: ['failure', 'success#1'] },
};

/** A fault met by the run; `shared` ones hit whichever run calls next. */
export type Fault =
  | { at: 'github' | 'amplify'; shared: boolean; rule: (run: PlannedRun) => FaultRule }
  | { at: 'database'; write: WriteTarget; nth?: number }
  | { at: 'users-read' }
  | { at: 'smtp' };

export interface Target {
  /** The state the run is saved in when the child is killed. */
  state: string;
  flow: Flow;
  /** The outcome when it differs from the flow's: the flow's fault is gone after the kill. */
  ends?: Flow;
  hold: 'call' | 'freeze' | 'wait' | 'none';
  fault?: Fault;
  /** Part of the sample played on PGlite; PostgreSQL plays every target. */
  pglite?: boolean;
}

export interface PlannedRun {
  target: Target;
  label: string;
  repoName: string;
  answers: Record<'email' | 'agency' | 'repoName' | 'siteName' | 'pointOfContact', string>;
  submission: TestSubmission;
  runId?: string;
}

export const repoPath = (run: PlannedRun) => `/repos/${ORG}/${run.repoName}`;
export const teamGrant = (run: PlannedRun) => `/orgs/${ORG}/teams/${TEAM}${repoPath(run)}`;

/** One run's own path, matched whole. */
const own = (path: string) => new RegExp(`^${path}$`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class CrashWorld {
  readonly runs: PlannedRun[] = [];
  /** Every state a run was saved in when the child was killed, with how many runs. */
  readonly killedIn = new Map<string, number>();
  private child: ChildService | undefined;
  private readonly rules: Array<{ at: 'github' | 'amplify'; id: number }> = [];
  private readonly keys = generateFormKeyPair();
  private readonly formId = generateObjectId();
  private db: Kysely<Database> | undefined;
  private count = 0;

  private constructor(
    readonly engine: Engine,
    private readonly database: TestDatabase,
    readonly sandbox: Sandbox,
    readonly sink: SmtpSink,
  ) {
    this.db = database.db;
  }

  static async start(engine: Engine): Promise<CrashWorld> {
    const database = await createTestDatabase(
      engine,
      engine === 'pglite' ? { onDisk: true } : {},
    );
    const sandbox = await startSandbox({ org: ORG, region: REGION, team: TEAM });
    const sink = await startSmtpSink();
    await installCrashHolds(database.db);
    await addUser(database.db, REQUESTER);

    return new CrashWorld(engine, database, sandbox, sink);
  }

  /** Plays the targets over `lives` lives of the child, then lets a last one recover. */
  async play(targets: Target[], lives: number): Promise<void> {
    const plan = Array.from({ length: lives }, (_, life) =>
      targets.filter((_, index) => index % lives === life),
    );
    for (const life of plan) await this.live(life);

    await this.startChild();
    await this.waitUntilNoRunIsRunning();
    await this.redeliverEverySubmission();
    await this.requireChild().kill('SIGTERM');
    this.child = undefined;
  }

  /** One life of the child: recover what the last one left, steer new runs, kill. */
  private async live(targets: Target[]): Promise<void> {
    const planned = targets.map((target) => this.plan(target));
    const db = await this.database$();
    for (const run of planned) await this.armDatabase(db, run);

    await this.startChild();
    await this.waitUntilNoRunIsRunning();

    // Runs on their own repository paths and rows move together; a shared fault (an endpoint
    // every run calls, the next e-mail, a table lock) needs its run to be alone in motion.
    // Moving runs never meet a parked one: parked runs call nothing.
    const alone = (run: PlannedRun) => {
      const fault = run.target.fault;
      if (fault === undefined || fault.at === 'database') return false;

      return fault.at === 'smtp' || fault.at === 'users-read' || fault.shared;
    };
    const last = planned.filter((run) => run.target.hold === 'wait');
    const together = planned.filter((run) => !alone(run) && run.target.hold !== 'wait');
    await Promise.all(together.map((run) => this.steer(run)));
    for (const run of planned.filter(alone)) await this.steer(run);
    for (const run of last) await this.steer(run);

    await this.kill(planned);
  }

  private plan(target: Target): PlannedRun {
    this.count += 1;
    const n = this.count;
    const repoName = `crash-${n}-${target.hold}`;
    const answers = {
      email: target.flow === 'unregistered' ? `stranger-${n}@agency.gov.sg` : REQUESTER,
      agency: 'Ministry of Examples',
      repoName,
      siteName: `Crash Site ${n}`,
      pointOfContact: 'Jane Tan',
    };
    const run: PlannedRun = {
      target,
      label: `${n}-${target.flow}-${target.hold}-${target.state}`,
      repoName,
      answers,
      submission: this.build(answers),
    };
    this.runs.push(run);

    return run;
  }

  private build(answers: PlannedRun['answers'], submissionId?: string): TestSubmission {
    return buildTestSubmission({
      answers,
      formPublicKey: this.keys.publicKey,
      webhookUrl: WEBHOOK_URL,
      formId: this.formId,
      ...(submissionId ? { submissionId } : {}),
    });
  }

  /** Faults and freezes the database keeps for a run; written before the child opens it. */
  private async armDatabase(db: Kysely<Database>, run: PlannedRun): Promise<void> {
    const { target } = run;
    const id = run.submission.submissionId;
    if (target.flow === 'rollback' || target.flow === 'cleanup') {
      await failWrite(db, id, 'deployments:INSERT', { code: '23514' });
    }
    if (target.fault?.at === 'database') {
      const nth = target.fault.nth ?? 1;
      await failWrite(db, id, target.fault.write, { code: '40001', nth });
    }
    if (target.hold === 'freeze') await freezeAt(db, id, target.state);
  }

  /** The emulator and SMTP faults of a run: its flow's, then its target's. */
  private armCalls(run: PlannedRun): void {
    const add = (at: 'github' | 'amplify', rule: FaultRule) => {
      this.rules.push({ at, id: this.sandbox[at].faults.add(rule) });
    };
    if (run.target.flow === 'cleanup') {
      add('github', { method: 'DELETE', path: own(repoPath(run)), status: 403 });
    }
    if (run.target.flow === 'reopen') {
      add('github', { method: 'PUT', path: own(teamGrant(run)), status: 403, times: 1 });
    }
    const fault = run.target.fault;
    if (fault?.at === 'github' || fault?.at === 'amplify') add(fault.at, fault.rule(run));
    if (fault?.at === 'smtp') this.sink.failNext(421);
  }

  /** Posts the run's submission and waits until it is saved in its target state. */
  private async steer(run: PlannedRun): Promise<void> {
    const child = this.requireChild();
    this.armCalls(run);
    const read = run.target.fault?.at === 'users-read'
      ? await cancelNextRead(await this.database$(), 'users')
      : undefined;

    const response = await child.post(run.submission);
    expect(response.status, run.label).toBe(200);
    const { runId } = (await response.json()) as { runId: string };
    run.runId = runId;

    if (run.target.flow === 'reopen') {
      await this.waitForRun(run, (state) => state === 'failed');
      await this.retryByOperator(run);
    }
    await this.waitForRun(run, (state) => state === run.target.state);
    await read?.done;
    // The saved state comes first (write-ahead); give the held call the moment to go out.
    if (run.target.hold === 'call') await sleep(100);
  }

  /** The run's final state is saved a moment before the runner lets go of it: it is busy. */
  private async retryByOperator(run: PlannedRun): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const answer = await this.requireChild().admin('POST', `/runs/${run.runId}/retry`);
      if (answer.status === 202) return;
      expect(answer.body, run.label).toMatchObject({ error: 'busy' });
      if (Date.now() > deadline) throw new Error(`run ${run.label} stayed busy`);
      await sleep(20);
    }
  }

  private async waitForRun(run: PlannedRun, reached: (state: string) => boolean): Promise<void> {
    const deadline = Date.now() + 30_000;
    let state = '';
    while (Date.now() < deadline) {
      state = (await this.stateOf(run)) ?? '';
      if (reached(state)) return;
      await sleep(this.engine === 'postgres' ? 20 : 50);
    }
    throw new Error(`run ${run.label} did not get there; it is in "${state}"`);
  }

  /** The run's saved state: from the database, or on PGlite through the child's admin API. */
  private async stateOf(run: PlannedRun): Promise<string | undefined> {
    const id = run.submission.submissionId;
    if (this.engine === 'postgres') {
      const row = await this.requireDb()
        .selectFrom('runs')
        .select('state')
        .where('submission_id', '=', id)
        .executeTakeFirst();

      return row?.state;
    }
    const answer = await this.requireChild().admin<{ state?: string }>('GET', `/runs/${id}`);

    return answer.body.state;
  }

  /** SIGKILL, then notes where every run stood and clears the faults of that life. */
  private async kill(planned: PlannedRun[]): Promise<void> {
    await this.requireChild().kill('SIGKILL');
    this.child = undefined;

    const db = await this.database$();
    const rows = await db.selectFrom('runs').select(['submission_id', 'state']).execute();
    for (const { state } of rows) this.killedIn.set(state, (this.killedIn.get(state) ?? 0) + 1);
    const saved = new Map(rows.map((row) => [row.submission_id, row.state]));
    const astray = planned
      .filter((run) => saved.get(run.submission.submissionId) !== run.target.state)
      .map((run) => `${run.label}: in ${saved.get(run.submission.submissionId)}`);
    expect(astray, 'runs not in their target state at the kill').toEqual([]);

    // The faults were the crash's circumstances; the next life meets a healthy world.
    await clearHolds(db);
    for (const { at, id } of this.rules.splice(0)) this.sandbox[at].faults.remove(id);
  }

  private async startChild(): Promise<void> {
    if (this.engine === 'pglite') {
      // PGlite is one process: the child opens the folder once the test lets go of it.
      await this.database.release?.();
      this.db = undefined;
    }
    this.child = await startChildService({ env: this.env(), adminToken: ADMIN_TOKEN });
  }

  private env(): Record<string, string> {
    const { sandbox } = this;
    const database: Record<string, string> = this.engine === 'postgres'
      ? { DATABASE_URL: this.database.url as string }
      : { PGLITE_DIR: this.database.pgliteDir as string };

    return {
      FORMSG_MODE: 'test',
      FORMSG_SECRET_KEY: this.keys.secretKey,
      FORMSG_WEBHOOK_URL: WEBHOOK_URL,
      FORMSG_FORM_ID: this.formId,
      GITHUB_TOKEN: sandbox.githubToken,
      GITHUB_API_URL: sandbox.github.url,
      GITHUB_ORG: ORG,
      GITHUB_TEAM: TEAM,
      AMPLIFY_ENDPOINT: sandbox.amplify.url,
      AWS_ACCESS_KEY_ID: sandbox.awsCredentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: sandbox.awsCredentials.secretAccessKey,
      AWS_REGION: REGION,
      SMTP_URL: this.sink.url,
      MAIL_FROM: 'Site Platform <sites@example.gov.sg>',
      OPS_EMAIL: OPS,
      ADMIN_TOKEN: `crash:${ADMIN_TOKEN}`,
      RETRY_MAX_ATTEMPTS: '4',
      RETRY_BASE_DELAY_MS: '20',
      RETRY_MAX_DELAY_MS: '100',
      // Calls held open must stay open until the kill.
      STEP_TIMEOUT_MS: '120000',
      // No sweep: a frozen run must not be picked up again while the child lives.
      RESUME_INTERVAL_MS: '3600000',
      LOG_LEVEL: 'info',
      ...database,
    };
  }

  private async waitUntilNoRunIsRunning(): Promise<void> {
    const child = this.requireChild();
    const deadline = Date.now() + 60_000;
    for (;;) {
      const { body } = await child.admin<{ runs: Array<{ submissionId: string; state: string }> }>(
        'GET',
        '/runs?status=running&limit=500',
      );
      if (body.runs.length === 0) return;
      if (Date.now() > deadline) {
        const stuck = body.runs.map((run) => `${run.submissionId} in ${run.state}`);
        throw new Error(`runs still running after recovery: ${stuck.join(', ')}`);
      }
      await sleep(100);
    }
  }

  /** FormSG delivers every submission again, freshly signed: nothing new may start. */
  private async redeliverEverySubmission(): Promise<void> {
    const child = this.requireChild();
    const answers = await Promise.all(
      this.runs.map(async (run) => {
        const response = await child.post(this.build(run.answers, run.submission.submissionId));
        const body = (await response.json()) as Record<string, unknown>;

        return { run, status: response.status, body };
      }),
    );
    for (const { run, status, body } of answers) {
      expect(status, run.label).toBe(200);
      expect(body, run.label).toMatchObject({ runId: run.runId, duplicate: true });
    }
  }

  /** Every way the world differs from what the submissions' outcomes call for. */
  async wholeness(): Promise<string[]> {
    const db = await this.database$();
    const problems: string[] = [];
    const mails = new Map<string, string[]>();
    for (const { messageId } of this.sink.messages) {
      const match = /^<([0-9a-f-]{36})\.(.+)@site-orchestrator\.local>$/.exec(messageId);
      if (!match?.[1] || !match[2]) {
        problems.push(`an e-mail with an unknown message id ${messageId}`);
        continue;
      }
      mails.set(match[1], [...(mails.get(match[1]) ?? []), match[2]]);
    }

    const owned = { repos: new Set<string>(), apps: new Set<string>() };
    for (const run of this.runs) {
      const found = (what: string) => problems.push(`${run.label}: ${what}`);
      await this.checkRun(db, run, mails, owned, found);
    }

    const repos = this.sandbox.github.state.listRepos(ORG);
    const strayRepos = repos.filter((repo) => !owned.repos.has(repo.name.toLowerCase()));
    if (strayRepos.length > 0) {
      problems.push(`repositories nobody owns: ${strayRepos.map((r) => r.name).join(', ')}`);
    }
    const apps = this.sandbox.amplify.state.listApps();
    const strayApps = apps.filter((app) => !owned.apps.has(app.appId));
    if (strayApps.length > 0) problems.push(`${strayApps.length} Amplify apps nobody owns`);
    const unfinished = await db.selectFrom('runs').select('id').where('status', '=', 'running');
    const running = await unfinished.execute();
    if (running.length > 0) problems.push(`${running.length} runs not final`);

    return problems;
  }

  /** One submission: its run, e-mails, rows, repository and app. */
  private async checkRun(
    db: Kysely<Database>,
    run: PlannedRun,
    mails: Map<string, string[]>,
    owned: { repos: Set<string>; apps: Set<string> },
    found: (what: string) => void,
  ): Promise<void> {
    const flow = run.target.ends ?? run.target.flow;
    const outcome = OUTCOMES[flow];
    const succeeded = outcome.status === 'succeeded';
    const id = run.submission.submissionId;

    const runRow = await db
      .selectFrom('runs')
      .selectAll()
      .where('submission_id', '=', id)
      .executeTakeFirst();
    if (!runRow || runRow.id !== run.runId) return found('not the run first answered');
    if (runRow.status !== outcome.status) found(`status ${runRow.status} (${runRow.state})`);

    const sent = [...(mails.get(runRow.id) ?? [])].sort();
    if (sent.join() !== outcome.mails.join()) found(`e-mails [${sent.join(', ')}]`);
    const recorded = await db.selectFrom('mails').select('kind').where('run_id', '=', runRow.id);
    const kinds = (await recorded.execute()).map((mail) => mail.kind).sort();
    if (kinds.join() !== outcome.mails.join()) found(`mails rows [${kinds.join(', ')}]`);

    const sites = await db
      .selectFrom('sites')
      .selectAll()
      .where('submission_id', '=', id)
      .execute();
    const [site] = sites;
    if (sites.length !== (flow === 'unregistered' ? 0 : 1)) found(`${sites.length} sites rows`);
    const statuses = site ? `${site.site_status}/${site.job_status}` : undefined;
    if (site && succeeded && statuses !== 'LAUNCH/READY') found(`site ${statuses}`);
    if (site && !succeeded && site.job_status !== 'FAILURE') found(`site ${statuses}`);

    const siteId = site ? Number(site.id) : -1;
    const repoRows = await db
      .selectFrom('repos')
      .select('name')
      .where('site_id', '=', siteId)
      .execute();
    const deployments = await db
      .selectFrom('deployments')
      .select('hosting_id')
      .where('site_id', '=', siteId)
      .execute();
    // A repository an undo could not delete stays, and so does its row: they agree.
    const repoKept = succeeded || flow === 'cleanup';
    if (repoRows.length !== (repoKept ? 1 : 0)) found(`${repoRows.length} repos rows`);
    if (deployments.length !== (succeeded ? 1 : 0)) found(`${deployments.length} deployments`);

    const github = this.sandbox.github.state;
    const repo = github.getRepo(ORG, run.repoName);
    if (repoKept) owned.repos.add(run.repoName.toLowerCase());
    if (repoKept && !repo?.description?.includes(`${RUN_MARKER}:${runRow.id}`)) {
      found('no repository carrying the run marker');
    }
    if (!repoKept && repo) found('a repository that should be gone');
    if (succeeded && repo) {
      const heads = Object.keys(github.refs(ORG, run.repoName));
      const branches = ['refs/heads/staging', 'refs/heads/master'];
      if (!branches.every((branch) => heads.includes(branch))) found(`refs ${heads.join(', ')}`);
      if (github.teamPermission(ORG, TEAM, run.repoName) !== 'push') found('no team access');
    }

    const amplify = this.sandbox.amplify.state;
    const apps = amplify.listApps().filter((app) => app.tags[RUN_MARKER] === runRow.id);
    if (apps.length !== (succeeded ? 1 : 0)) found(`${apps.length} Amplify apps`);
    const [app] = apps;
    if (succeeded && app) {
      owned.apps.add(app.appId);
      if (deployments[0]?.hosting_id !== app.appId) found('a deployments row of another app');
      for (const branch of ['master', 'staging']) {
        const builds = amplify.jobs(app.appId, branch).length;
        if (builds !== 1) found(`${builds} builds of ${branch}`);
      }
    }
  }

  /** The test's handle on the database; on PGlite only while the child is not running. */
  private async database$(): Promise<Kysely<Database>> {
    if (this.db) return this.db;
    if (this.child) throw new Error('PGlite is open in the child');
    this.db = await this.database.reopen?.();
    if (!this.db) throw new Error('the database cannot be reopened');

    return this.db;
  }

  private requireDb(): Kysely<Database> {
    if (!this.db) throw new Error('the database is not open here');

    return this.db;
  }

  private requireChild(): ChildService {
    if (!this.child) throw new Error('the service is not running');

    return this.child;
  }

  async close(): Promise<void> {
    await this.child?.kill('SIGKILL');
    await this.sandbox.close();
    await this.sink.close();
    await this.database.close();
  }
}
