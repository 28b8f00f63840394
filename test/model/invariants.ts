/**
 * What must hold after every replayed path, whatever it was:
 * - the run's status and the site's statuses agree with the final state;
 * - the emulators hold exactly what the database says exists (rows, or what the run records as
 *   left behind): nothing orphaned, nothing missing;
 * - each go sent exactly the outcome e-mails its path sends, with content that matches;
 * - each go's history lists the path's states in order;
 * - no secret appears in the snapshot, the history, the logs or the e-mails.
 * Each check returns the problems it found, in words, so one replay reports all of them.
 */
import type { DatabaseKind } from '../../db/database.js';
import { statusOf } from '../../src/runs/runner.js';
import { describeStep } from '../../src/steps/describe.js';
import { RUN_TAG } from '../../src/steps/index.js';
import type { LeftBehind, MailKind } from '../../machines/site-creation.machine.js';
import type { ReplayResult, PhaseResult } from './replay.js';
import { runEvents } from './replay.js';
import { REQUESTER } from './scenario.js';
import { FOREIGN_REPO, OPS_EMAIL, ORG, type World } from './world.js';

/** A defect a replay has shown, kept visible until it is fixed (see the report to the lead). */
export interface KnownDefect {
  id: string;
  summary: string;
  /** The databases on which replays can show it. */
  kinds: DatabaseKind[];
  /** The problems (as `checkInvariants` words them) that this defect explains. */
  explains: RegExp;
}

export const KNOWN_DEFECTS: KnownDefect[] = [];

export async function checkInvariants(world: World, result: ReplayResult): Promise<string[]> {
  // A repeated delivery's own machine ends in `duplicate`; the run is the first delivery's.
  const goes = result.phases.filter((phase) => phase.phase.start !== 'redeliver');
  const last = goes[goes.length - 1];
  if (!last) return ['nothing was replayed'];
  const final = last.phase.leaves[last.phase.leaves.length - 1] ?? '';

  const problems = [
    ...result.phases.flatMap((phase, index) => historyProblems(phase, index)),
  ];
  if (final === 'rejected') return [...problems, ...(await rejectedProblems(world, last))];

  problems.push(...(await statusProblems(world, result, final)));
  problems.push(...(await resourceProblems(world, result)));
  problems.push(...(await mailProblems(world, result)));
  problems.push(...(await secretProblems(world, result)));

  return problems;
}

function historyProblems(result: PhaseResult, index: number): string[] {
  const problems: string[] = [];
  const { phase, recorded } = result;
  if (phase.start === 'submit' && phase.delivery === 'valid') {
    const { status, body } = result;
    if (status !== 200 || typeof body?.runId !== 'string' || body.duplicate !== false) {
      problems.push(`go ${index + 1}: the delivery was answered ${status} ${JSON.stringify(body)}`);
    }
  }
  const expected = phase.leaves[phase.leaves.length - 1] === 'rejected' ? [] : phase.leaves;
  if (JSON.stringify(recorded) !== JSON.stringify(expected)) {
    problems.push(
      `go ${index + 1}: the history lists\n    ${recorded.join(' > ')}\n  but the path is\n    ` +
        expected.join(' > '),
    );
  }
  const go = `go ${index + 1}`;
  if (result.unusedActions.length > 0) {
    problems.push(`${go}: planned reactions never ran: ${result.unusedActions.join(', ')}`);
  }
  if (result.refusedCancels.length > 0) {
    problems.push(`${go}: the cancel was refused: ${result.refusedCancels.join('; ')}`);
  }

  return problems;
}

async function rejectedProblems(world: World, result: PhaseResult): Promise<string[]> {
  const problems: string[] = [];
  if (result.status !== 400) problems.push(`a rejected delivery was answered ${result.status}`);

  const runs = await world.db.selectFrom('runs').select('id').execute();
  const sites = await world.db.selectFrom('sites').select('id').execute();
  if (runs.length + sites.length > 0) problems.push('a rejected delivery stored rows');
  const calls = world.sandbox.github.requests.length + world.sandbox.amplify.requests.length;
  if (calls > 0) problems.push(`a rejected delivery made ${calls} calls to GitHub or Amplify`);
  if (world.sink.messages.length > 0) problems.push('a rejected delivery sent e-mail');

  return problems;
}

async function statusProblems(world: World, result: ReplayResult, final: string) {
  const problems: string[] = [];
  const run = await world.db
    .selectFrom('runs')
    .selectAll()
    .where('id', '=', result.runId ?? '')
    .executeTakeFirst();
  if (!run) return ['the run was not recorded'];

  if (run.state !== final) problems.push(`the run rests in ${run.state}, not ${final}`);
  if (run.status !== statusOf(final)) {
    problems.push(`the run's status is ${run.status}, not ${statusOf(final)}`);
  }

  const sites = await world.db.selectFrom('sites').selectAll().execute();
  const madeSite = result.phases.some((phase) => phase.phase.expect.makesSite);
  if (sites.length !== (madeSite ? 1 : 0)) {
    problems.push(`${sites.length} site rows, expected ${madeSite ? 1 : 0}`);
  }
  const site = sites[0];
  if (!site) return problems;

  const statuses = `${site.site_status}/${site.job_status}`;
  const leftDatabase = leftBehindOf(run.resources).some((item) => item.kind === 'database');
  const allowed: Record<string, string[]> = {
    done: ['LAUNCH/READY'],
    failed: ['INIT/FAILURE'],
    // A site that could not be marked keeps the status it had, and the run says so.
    needsCleanup: leftDatabase ? ['INIT/RUNNING', 'INIT/FAILURE'] : ['INIT/FAILURE'],
  };
  if (!(allowed[final] ?? []).includes(statuses)) {
    problems.push(`the site is ${statuses} after ${final}`);
  }

  return problems;
}

function leftBehindOf(resources: unknown): LeftBehind[] {
  const list = (resources as { leftBehind?: LeftBehind[] } | null)?.leftBehind;

  return Array.isArray(list) ? list : [];
}

async function resourceProblems(world: World, result: ReplayResult): Promise<string[]> {
  const problems: string[] = [];
  const { github, amplify } = world.sandbox;
  const repoRows = await world.db.selectFrom('repos').selectAll().execute();
  const deploymentRows = await world.db.selectFrom('deployments').selectAll().execute();
  const runs = await world.db.selectFrom('runs').select(['id', 'resources']).execute();
  const left = runs.flatMap((run) => leftBehindOf(run.resources));

  // Someone else's repository (a taken name) is not ours to record or remove.
  const ours = github.state
    .listRepos(ORG)
    .filter((repo) => runs.some((run) => repo.description?.includes(`${RUN_TAG}:${run.id}`)));
  const foreign = github.state.listRepos(ORG).filter((repo) => !ours.includes(repo));
  for (const repo of foreign) {
    if (repo.description !== FOREIGN_REPO) {
      problems.push(`GitHub holds ${repo.name}, which no run made and no test seeded`);
    }
  }
  const seeded = result.phases.some((phase) => phase.phase.nameTaken);
  if (seeded && github.state.getRepo(ORG, result.repoName)?.description !== FOREIGN_REPO) {
    problems.push(`someone else's repository ${result.repoName} was not left alone`);
  }

  for (const repo of ours) {
    const recorded = repoRows.some((row) => row.name === repo.name);
    const reported = left.some((item) => item.kind === 'repository' && item.id === repo.fullName);
    if (!recorded && !reported) problems.push(`orphaned repository ${repo.fullName}`);
  }
  for (const row of repoRows) {
    if (!ours.some((repo) => repo.name === row.name)) {
      problems.push(`the repos table lists ${row.name}, which GitHub does not hold`);
    }
  }

  const apps = amplify.state.listApps();
  for (const app of apps) {
    const recorded = deploymentRows.some((row) => row.hosting_id === app.appId);
    const reported = left.some((item) => item.kind === 'amplify-app' && item.id === app.appId);
    if (!recorded && !reported) problems.push(`orphaned Amplify app ${app.appId} (${app.name})`);
    if (app.tags[RUN_TAG] !== result.runId) problems.push(`app ${app.appId} is not tagged`);
  }
  for (const row of deploymentRows) {
    if (!apps.some((app) => app.appId === row.hosting_id)) {
      problems.push(`the deployments table lists ${row.hosting_id}, which Amplify does not hold`);
    }
  }

  return problems;
}

const OUTCOME_KINDS: readonly MailKind[] = ['success', 'failure', 'rejection'];

async function mailProblems(world: World, result: ReplayResult): Promise<string[]> {
  const problems: string[] = [];
  const messages = world.sink.messages;
  const expected = result.phases.flatMap((phase) => phase.phase.expect.mails);
  const toRequester = messages.filter((m) => m.to.includes(REQUESTER.toLowerCase()));
  const toOps = messages.filter((m) => m.to.includes(OPS_EMAIL));
  const outcomes = expected.filter((kind) => OUTCOME_KINDS.includes(kind));
  const opsMails = expected.filter((kind) => kind === 'ops');

  if (toRequester.length !== outcomes.length) {
    problems.push(`the requester got ${toRequester.length} e-mails, expected ${outcomes.length}`);
  }
  if (toOps.length !== opsMails.length) {
    problems.push(`operations got ${toOps.length} e-mails, expected ${opsMails.length}`);
  }
  if (toRequester.length + toOps.length !== messages.length) {
    problems.push('e-mail went to someone other than the requester and operations');
  }

  const sent = await world.db.selectFrom('mails').selectAll().execute();
  if (sent.length !== messages.length) {
    problems.push(`the mails table lists ${sent.length} e-mails; the sink got ${messages.length}`);
  }

  // Each go's outcome e-mail, in order, must say what that go's path did.
  const goes = result.phases.filter((phase) => phase.phase.expect.mails.some((k) => k !== 'ops'));
  goes.forEach((go, index) => {
    const kind = go.phase.expect.mails.find((k) => k !== 'ops');
    const text = toRequester[index]?.text ?? '';
    if (kind) problems.push(...contentProblems(kind, text, go, result));
  });

  const deployment = await world.db.selectFrom('deployments').selectAll().executeTakeFirst();
  const lastGo = result.phases[result.phases.length - 1];
  if (lastGo?.phase.expect.mails.includes('success') && deployment) {
    const text = toRequester[toRequester.length - 1]?.text ?? '';
    for (const url of [deployment.production_url, deployment.staging_url]) {
      if (!text.includes(url)) problems.push(`the success e-mail does not give ${url}`);
    }
  }

  const run = await world.db
    .selectFrom('runs')
    .select('resources')
    .where('id', '=', result.runId ?? '')
    .executeTakeFirst();
  for (const mail of toOps) {
    if (!mail.text.includes(result.runId ?? '?')) problems.push('the ops e-mail omits the run');
    for (const item of leftBehindOf(run?.resources)) {
      if (!mail.text.includes(item.id)) problems.push(`the ops e-mail omits ${item.id}`);
    }
  }

  return problems;
}

function contentProblems(
  kind: MailKind,
  text: string,
  go: PhaseResult,
  result: ReplayResult,
): string[] {
  const problems: string[] = [];
  const { phase } = go;
  const flat = text.replace(/\s+/g, ' ');
  const says = (words: string) => flat.includes(words);

  if (kind === 'rejection') {
    const why = phase.answers === 'badRepoName' ? 'Repository Name' : 'not a registered user';
    if (!says(why)) problems.push(`the rejection e-mail does not say "${why}"`);
  }
  if (kind === 'success' && !says(result.siteName)) {
    problems.push('the success e-mail does not name the site');
  }
  if (kind === 'failure') {
    const step = phase.expect.failedStep;
    if (step && !says(describeStep(step))) {
      problems.push(`the failure e-mail does not say "${describeStep(step)}"`);
    }
    // Only what this go really removed may be claimed as undone.
    const removed = {
      'amplify-app': go.calls.amplify.some((c) => c.operation === 'DeleteApp' && c.status < 300),
      repository: go.calls.github.some(
        (c) => c.method === 'DELETE' && c.path === `/repos/${ORG}/${result.repoName}` &&
          c.status < 300,
      ),
    };
    const claims = {
      'amplify-app': says('the Amplify app was deleted'),
      repository: says('the GitHub repository was deleted'),
    };
    for (const what of ['amplify-app', 'repository'] as const) {
      if (claims[what] !== removed[what]) {
        problems.push(
          `the failure e-mail ${claims[what] ? 'claims' : 'omits'} that the ${what} was deleted`,
        );
      }
    }
    const toldOps = says('operations team has been told');
    const opsSent = phase.expect.mails.includes('ops');
    if (toldOps !== opsSent) {
      problems.push(`the failure e-mail says operations were ${toldOps ? '' : 'not '}told`);
    }
  }

  return problems;
}

async function secretProblems(world: World, result: ReplayResult): Promise<string[]> {
  const runs = await world.db.selectFrom('runs').selectAll().execute();
  const events = result.runId ? await runEvents(world, result.runId) : [];
  const places: Array<[string, string]> = [
    ['the run record and snapshot', JSON.stringify(runs)],
    ['the history', JSON.stringify(events)],
    ['the logs', world.rawLogs.join('\n')],
    ['the e-mails', world.sink.messages.map((m) => m.raw).join('\n')],
  ];

  return places.flatMap(([where, text]) =>
    world.secrets.filter((secret) => text.includes(secret)).map(() => `a secret is in ${where}`),
  );
}
