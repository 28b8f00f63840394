/**
 * Replays a scenario against the real service of a world: arranges users, names and database
 * faults, posts a signed submission (or asks for an operator's retry or rollback), reacts to
 * each state the run enters as the scenario says (an emulator fault, a refused e-mail, an
 * operator's cancel), and waits for the run to finish. Returns what a check needs.
 */
import { sql } from 'kysely';
import type { RunEventRow } from '../../db/runs.repository.js';
import { defaultFieldTitles } from '../../src/formsg/fields.js';
import { buildTestSubmission } from '../../src/formsg/test-submission.js';
import type { Service } from '../../src/service.js';
import { REQUESTER, type EntryAction, type Phase } from './scenario.js';
import { FOREIGN_REPO, ORG, WEBHOOK_URL, type LogLine, type World } from './world.js';

/** What one go left behind: the HTTP answer, and the leaf states its history lists. */
export interface PhaseResult {
  phase: Phase;
  /** The HTTP answer to a delivery; absent for an operator's go. */
  status?: number;
  body?: Record<string, unknown>;
  recorded: string[];
  /** Entry actions the run never got to: the history went elsewhere. */
  unusedActions: string[];
  /** Operator cancels that were refused. */
  refusedCancels: string[];
  /** The calls the emulators answered during this go. */
  calls: {
    github: Array<{ method: string; path: string; status: number }>;
    amplify: Array<{ method: string; path: string; status: number; operation: string }>;
  };
}

export interface ReplayResult {
  runId: string | undefined;
  submissionId: string | undefined;
  repoName: string;
  siteName: string;
  phases: PhaseResult[];
}

const OPERATOR = 'model-operator';

/** Replays every phase in order on a freshly reset world. */
export async function replay(
  world: World,
  phases: Phase[],
  names: { repoName: string; siteName: string },
): Promise<ReplayResult> {
  const result: ReplayResult = { runId: undefined, submissionId: undefined, ...names, phases: [] };
  let registered = false;

  for (const phase of phases) {
    const service = await world.service(phase.shape);
    registered = await arrange(world, phase, names.repoName, registered);

    const locks = new Map<string, Promise<() => Promise<void>>>();
    for (const table of phase.locks) {
      const release = await world.lockTable(table);
      locks.set(table, Promise.resolve(release));
    }
    const reactions = watchEntries(world, phase, service, locks);
    const githubFrom = world.sandbox.github.requests.length;
    const amplifyFrom = world.sandbox.amplify.requests.length;
    const eventsBefore = result.runId ? await countEvents(world, result.runId) : 0;

    const answer = await begin(world, service, phase, result);

    try {
      await world.settle();
      await reactions.done();
      await world.settle();
    } finally {
      world.onLog = undefined;
      // A path that went elsewhere may leave a lock no cancel let go.
      await Promise.all([...locks.values()].map(async (lock) => (await lock)()));
    }

    const recorded =
      phase.start === 'redeliver'
        ? duplicateLeaves(answer.body, result.runId)
        : result.runId
          ? recordedLeaves(await runEvents(world, result.runId), eventsBefore, phase.start)
          : [];
    result.phases.push({
      phase,
      ...answer,
      recorded,
      unusedActions: reactions.unused(),
      refusedCancels: reactions.refused,
      calls: {
        github: world.sandbox.github.requests.slice(githubFrom),
        amplify: world.sandbox.amplify.requests.slice(amplifyFrom),
      },
    });
  }

  await world.sink.flush();

  return result;
}

/** Plans the go's database faults, seeds a taken name, and (un)registers the requester. */
async function arrange(
  world: World,
  phase: Phase,
  repoName: string,
  registered: boolean,
): Promise<boolean> {
  await world.planDbFaults(phase.dbFaults);
  if (phase.nameTaken) {
    world.sandbox.github.state.addRepo(ORG, repoName, {
      description: FOREIGN_REPO,
      withCommit: true,
    });
  }
  // Between goes the requester may have been registered, or removed.
  if (phase.registered !== registered) {
    if (phase.registered) await world.addUser(REQUESTER.toLowerCase());
    else await world.removeUsers();
  }

  return phase.registered;
}

/** Starts the go: a delivery (first or repeated), or an operator's retry or rollback. */
async function begin(
  world: World,
  service: Service,
  phase: Phase,
  result: ReplayResult,
): Promise<{ status?: number; body?: Record<string, unknown> }> {
  if (phase.start === 'retry' || phase.start === 'rollback') {
    const outcome = await service.runner.operate(result.runId ?? '', phase.start, OPERATOR);
    if (!outcome.ok) {
      throw new Error(`the operator's ${phase.start} was refused: ${outcome.message}`);
    }

    return {};
  }

  // A repeated delivery carries the same submission id, freshly signed, as FormSG's do.
  const again = phase.start === 'redeliver' ? result.submissionId : undefined;
  const answer = await submit(world, service, phase, result, again);
  if (phase.start === 'submit' && typeof answer.body.runId === 'string') {
    result.runId = answer.body.runId;
    result.submissionId = answer.submissionId;
  }

  return { status: answer.status, body: answer.body };
}

async function submit(
  world: World,
  service: Service,
  phase: Phase,
  names: { repoName: string; siteName: string },
  submissionId?: string,
): Promise<{ status: number; body: Record<string, unknown>; submissionId: string }> {
  const answers = {
    email: phase.answers === 'badEmail' ? 'not-an-address' : REQUESTER,
    agency: 'Ministry of Examples',
    repoName: phase.answers === 'badRepoName' ? 'not a valid name!' : names.repoName,
    siteName: names.siteName,
    pointOfContact: 'Jane Tan',
  };
  const submission = buildTestSubmission({
    answers,
    titles: defaultFieldTitles,
    formPublicKey: world.keys.publicKey,
    webhookUrl: phase.delivery === 'badSignature' ? 'https://elsewhere.example/sites' : WEBHOOK_URL,
    formId: world.formId,
    ...(submissionId ? { submissionId } : {}),
  });

  const response = await service.app.request('/sites', {
    method: 'POST',
    headers: submission.headers,
    body: JSON.stringify(submission.body),
  });

  const body = (await response.json()) as Record<string, unknown>;

  return { status: response.status, body, submissionId: submission.submissionId };
}

/**
 * A repeated delivery's machine is never saved: it ends in `duplicate` in memory, and the
 * answer is what shows it (200, `duplicate`, the first delivery's run).
 */
function duplicateLeaves(body: Record<string, unknown> | undefined, runId?: string): string[] {
  const duplicate = body?.duplicate === true && body.runId === runId;

  const end = duplicate ? 'duplicate' : `answered ${JSON.stringify(body)}`;

  return ['authenticating', 'accepted', end];
}

interface Reactions {
  done(): Promise<void>;
  unused(): string[];
  refused: string[];
}

/**
 * Runs the phase's entry actions as the service logs each state it enters. `locks` holds the
 * table locks taken so far; a cancel lets go of the ones it names once it is in.
 */
function watchEntries(
  world: World,
  phase: Phase,
  service: Service,
  locks: Map<string, Promise<() => Promise<void>>>,
): Reactions {
  const visits = new Map<string, number>();
  const cancels: Array<Promise<void>> = [];
  const refused: string[] = [];
  const letGo = async (table: string) => {
    const release = await locks.get(table);
    locks.delete(table);
    await release?.();
  };

  const act = (action: EntryAction, runId: string, leaf: string) => {
    switch (action.kind) {
      case 'github':
        world.sandbox.github.faults.add(action.rule);
        break;
      case 'amplify':
        world.sandbox.amplify.faults.add(action.rule);
        break;
      case 'refuseMail':
        world.sink.refuse({ to: action.to, code: action.code, times: 1 });
        break;
      case 'lock':
        locks.set(action.table, world.lockTable(action.table));
        break;
      case 'cancel':
        cancels.push(
          service.runner.operate(runId, 'cancel', OPERATOR).then(async (outcome) => {
            if (!outcome.ok) refused.push(`${leaf}: ${outcome.message}`);
            await Promise.all(action.release.map(letGo));
          }),
        );
        break;
      default: {
        const unknown: never = action;
        throw new Error(`unknown entry action ${JSON.stringify(unknown)}`);
      }
    }
  };

  world.onLog = (line: LogLine) => {
    if (line.event !== 'state.entered' || typeof line.state !== 'string') return;
    const leaf = line.state;
    const visit = visits.get(leaf) ?? 0;
    visits.set(leaf, visit + 1);
    for (const action of phase.onEntry.get(leaf)?.[visit] ?? []) {
      act(action, String(line.runId), leaf);
    }
  };

  return {
    async done() {
      await Promise.all(cancels);
    },
    unused() {
      const left: string[] = [];
      for (const [leaf, planned] of phase.onEntry) {
        const entered = visits.get(leaf) ?? 0;
        planned.forEach((actions, visit) => {
          if (visit >= entered && actions.length > 0) left.push(`${leaf}#${visit + 1}`);
        });
      }

      return left;
    },
    refused,
  };
}

async function countEvents(world: World, runId: string): Promise<number> {
  const row = await sql<{ n: string | number }>`select count(*) as n from run_events
    where run_id = ${runId}`.execute(world.db);

  return Number(row.rows[0]?.n ?? 0);
}

export async function runEvents(world: World, runId: string): Promise<RunEventRow[]> {
  return world.db
    .selectFrom('run_events')
    .selectAll()
    .where('run_id', '=', runId)
    .orderBy('id')
    .execute();
}

/**
 * The leaf states a go's history lists. A submission's go starts in `authenticating`, which the
 * webhook half never records, and `accepted`, recorded as `run.accepted`.
 */
function recordedLeaves(events: RunEventRow[], skip: number, start: Phase['start']): string[] {
  const own = events.slice(skip);
  const entered = own.filter((e) => e.type === 'state.entered').map((e) => e.state ?? '?');
  if (start !== 'submit') return entered;

  const accepted = own.some((e) => e.type === 'run.accepted') ? ['accepted'] : [];

  return ['authenticating', ...accepted, ...entered];
}
