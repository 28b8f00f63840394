/**
 * Turns a model path into a scenario for the real service: what to submit, who is registered,
 * which emulator call, database statement or e-mail fails (and how) each time a state is
 * entered, and when an operator cancels. A path that cannot be driven from the outside gets a
 * reason instead.
 */
import type { FaultRule } from '../../src/sandbox/faults.js';
import type { ErrorRecord } from '../../src/errors.js';
import type { DatabaseKind } from '../../db/database.js';
import type { MailKind, StepName } from '../../machines/site-creation.machine.js';
import { runningStep } from '../../src/runs/history.js';
import { leafOf, type ActorEvent, type ModelEvent, type ModelSnapshot } from './events.js';
import type { ModelPath, VariantName } from './paths.js';
import {
  DB_FAULT_STEPS,
  OPS_EMAIL,
  ORG,
  TEAM,
  type DbFaultStep,
  type ServiceShape,
} from './world.js';

export const REQUESTER = 'Officer@Agency.gov.sg';

/** Why some paths cannot be replayed; each is reported, none is dropped silently. */
export const UNREPLAYABLE = {
  validateError:
    'validateRequest error: the step turns every ValidationError into output and nothing in ' +
    'a decryptable submission makes it throw anything else',
  sleepError:
    'sleep error: the wait between attempts rejects only when its actor is stopped, and a ' +
    'stopped actor delivers no event',
  cancelDbStep:
    'run.cancel while a database step runs, on PGlite: the step is one short statement, and ' +
    'the operator\'s cancel must first read and write the run through the same single ' +
    'connection, queued behind it, so the cancel always lands after the step (on PostgreSQL ' +
    'a table lock holds the statement until the cancel is in)',
  twoPolicies:
    'a path that both waits out a retry and is cancelled while waiting needs two retry policies',
  reopenNoSite:
    'reopenSite error when the earlier go made no site: the step then touches nothing outside, ' +
    'so nothing can make it fail',
} as const;
export type UnreplayableReason = keyof typeof UNREPLAYABLE;

/** Tables a held database step writes to (PostgreSQL only). */
export type LockedTable = 'sites' | 'repos' | 'deployments';

/** Something done when the run enters a state. */
export type EntryAction =
  | { kind: 'github'; rule: FaultRule }
  | { kind: 'amplify'; rule: FaultRule }
  | { kind: 'refuseMail'; to: string; code: number }
  /** Takes a table lock that holds the next write to it. */
  | { kind: 'lock'; table: LockedTable }
  /** An operator's cancel; then the named locks are let go. */
  | { kind: 'cancel'; release: LockedTable[] };

/**
 * One go of a run: a submission, an operator's retry or rollback of a failed run, or the same
 * submission delivered again (its own machine ends in `duplicate`; the run goes on).
 */
export interface Phase {
  start: 'submit' | 'retry' | 'rollback' | 'redeliver';
  shape: ServiceShape;
  /** For submissions. */
  delivery: 'valid' | 'badSignature';
  answers: 'valid' | 'badRepoName' | 'badEmail';
  registered: boolean;
  /** Someone else's repository already has the requested name. */
  nameTaken: boolean;
  dbFaults: Partial<Record<DbFaultStep, Array<string | null>>>;
  /** Table locks taken before the go starts (PostgreSQL only). */
  locks: LockedTable[];
  /** Keyed by leaf state path; one entry per visit, in order. */
  onEntry: Map<string, Array<EntryAction[]>>;
  /** The leaf states the go's history must list, in order. */
  leaves: string[];
  /** The path this phase replays, when it is a model path. */
  path?: ModelPath;
  expect: PhaseExpectations;
}

/** What the go's path says about its outcome. */
export interface PhaseExpectations {
  /** The go inserts the site row. */
  makesSite: boolean;
  /** The step that failed for good (or `cancelled`), when the go fails. */
  failedStep: StepName | 'cancelled' | undefined;
  /** The e-mails the go sends, in order. */
  mails: MailKind[];
}

export type Scenario =
  | { replayable: true; phases: Phase[] }
  | { replayable: false; reason: UnreplayableReason };

/** How long a held call takes to answer: ample time for an operator's cancel to arrive. */
const HOLD_MS = 250;

const CANCEL = { type: 'run.cancel', by: 'model-operator' } as const;

const DB_STEPS = new Set<StepName>(DB_FAULT_STEPS);

/** SQLSTATEs the adapters classify: a serialisation failure passes, a refused grant does not. */
const SQLSTATE = { transient: '40001', permanent: '42501' } as const;

/** Why the model's step from `source` on `event` cannot be driven from the outside, if so. */
export function edgeReason(
  source: ModelSnapshot,
  event: ModelEvent,
  kind: DatabaseKind,
): UnreplayableReason | undefined {
  const leaf = leafOf(source);
  const failed = event.type.startsWith('xstate.error.');
  if (leaf === 'validating' && failed) return 'validateError';
  if (leaf.endsWith('.waiting') && failed) return 'sleepError';
  const running = runningStep(leaf);
  const cancel = event.type === 'run.cancel';
  if (kind === 'pglite' && cancel && running && DB_STEPS.has(running)) return 'cancelDbStep';
  if (running === 'reopenSite' && failed && source.context.siteId === null) return 'reopenNoSite';

  return undefined;
}

function isActorEvent(event: ModelEvent): event is ActorEvent {
  return event.type.startsWith('xstate.');
}

function errorOf(event: ModelEvent): ErrorRecord | undefined {
  return 'error' in event ? (event.error as ErrorRecord) : undefined;
}

/**
 * The emulator rule that makes `step`'s call fail (or, `ok`, go through); `held` answers only
 * after HOLD_MS, long enough for an operator's cancel to arrive while the call is in flight.
 */
function httpRule(
  step: StepName,
  repoName: string,
  outcome: 'ok' | 'transient' | 'permanent',
  held = false,
): EntryAction | undefined {
  const repoPath = `/repos/${ORG}/${repoName}`;
  const hold = held ? { delayMs: HOLD_MS } : {};
  const github = (method: string, path: RegExp): EntryAction => ({
    kind: 'github',
    rule: {
      method,
      path,
      times: 1,
      ...hold,
      ...(outcome === 'transient' ? { status: 502 } : {}),
      ...(outcome === 'permanent' ? { status: 403, message: 'Resource not accessible' } : {}),
    },
  });
  const amplify = (method: string, path: RegExp): EntryAction => ({
    kind: 'amplify',
    rule: {
      method,
      path,
      times: 1,
      ...hold,
      ...(outcome === 'transient'
        ? { status: 503, errorType: 'ServiceUnavailableException' }
        : {}),
      ...(outcome === 'permanent'
        ? { status: 400, errorType: 'BadRequestException', message: 'Invalid request' }
        : {}),
    },
  });
  const exact = (path: string) => new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

  switch (step) {
    case 'createRepository':
      return github('POST', exact(`/orgs/${ORG}/repos`));
    case 'waitForRepoContent':
      return github('GET', new RegExp(`^${repoPath}/git/ref/`));
    case 'ensureRepoBranches':
      return github('POST', exact(`${repoPath}/git/refs`));
    case 'grantTeam':
      return github('PUT', exact(`/orgs/${ORG}/teams/${TEAM}/repos/${ORG}/${repoName}`));
    case 'deleteRepo':
      return github('GET', exact(repoPath));
    case 'createApp':
      return amplify('POST', /^\/apps$/);
    case 'ensureAppBranches':
      return amplify('POST', /^\/apps\/[^/]+\/branches$/);
    case 'startBuilds':
      return amplify('POST', /^\/apps\/[^/]+\/branches\/[^/]+\/jobs$/);
    case 'deleteApp':
      return amplify('GET', /^\/apps$/);
    default:
      return undefined;
  }
}

/** Who receives the e-mail a notifying state sends. */
function mailRecipient(step: StepName): string | undefined {
  switch (step) {
    case 'sendOpsMail':
      return OPS_EMAIL;
    case 'sendSuccessMail':
    case 'sendFailureMail':
    case 'sendRejectionMail':
      return REQUESTER;
    default:
      return undefined;
  }
}

function emptyPhase(start: Phase['start'], shape: ServiceShape): Phase {
  return {
    start,
    shape,
    delivery: 'valid',
    answers: 'valid',
    registered: true,
    nameTaken: false,
    dbFaults: {},
    locks: [],
    onEntry: new Map(),
    leaves: [],
    expect: { makesSite: false, failedStep: undefined, mails: [] },
  };
}

const MAIL_OF_STEP: Partial<Record<StepName, MailKind>> = {
  sendSuccessMail: 'success',
  sendFailureMail: 'failure',
  sendRejectionMail: 'rejection',
  sendOpsMail: 'ops',
};

function addEntry(phase: Phase, leaf: string, visit: number, action: EntryAction): void {
  const visits = phase.onEntry.get(leaf) ?? [];
  while (visits.length <= visit) visits.push([]);
  visits[visit]?.push(action);
  phase.onEntry.set(leaf, visits);
}

function planDb(phase: Phase, step: DbFaultStep, execution: number, sqlstate: string): void {
  const plan = phase.dbFaults[step] ?? [];
  while (plan.length <= execution) plan.push(null);
  plan[execution] = sqlstate;
  phase.dbFaults[step] = plan;
}

/** The table each cancellable database step writes to. */
const TABLE_OF_STEP: Partial<Record<StepName, LockedTable>> = {
  createSite: 'sites',
  recordRepo: 'repos',
  recordDeployment: 'deployments',
  markSiteReady: 'sites',
};

/**
 * Translates one model path; `repoName` is the name the submission will ask for. On `kind`
 * depends whether a database step can be held while an operator cancels.
 */
export function scenarioFor(path: ModelPath, repoName: string, kind: DatabaseKind): Scenario {
  const fresh = path.variant === 'full' || path.variant === 'bare';
  const configured = path.variant !== 'bare';
  const shape: ServiceShape = { team: configured, ops: configured, slow: false };
  const phase = emptyPhase(fresh ? 'submit' : startOf(path.variant), shape);
  phase.path = path;

  const entries = entryIndexes(path.steps.map((s) => leafOf(s.state)));
  const executions = new Map<StepName, number>();
  let waits = 0;
  let cancelledWhileWaiting = false;

  for (let index = 1; index < path.steps.length; index += 1) {
    const before = path.steps[index - 1]?.state;
    const step = path.steps[index];
    if (!before || !step) continue;
    const leaf = leafOf(before);
    const event = step.event;
    const visit = entries[index - 1] ?? 0;
    const running = runningStep(leaf);

    const reason = edgeReason(before, event, kind);
    if (reason) return unreplayable(reason);
    if (event.type === 'admission.recorded') continue;
    if (event.type === 'admission.duplicate') {
      phase.start = 'redeliver';
      continue;
    }

    const after = leafOf(step.state);
    // A cancel was asked for while this step's call was in flight: it lands with the answer.
    const held = before.context.cancelledBy !== null && before.can(CANCEL);
    const cancelling = event.type === 'run.cancel' || held;
    const undoing = /^(rollingBack|notifyingOps|notifyingFailure)\./;
    if (undoing.test(after) && !undoing.test(leaf)) {
      phase.expect.failedStep = cancelling ? 'cancelled' : running;
    }

    if (event.type === 'run.cancel') {
      // While waiting the cancel takes effect at once; while a call is in flight, once the
      // call has answered (the next event says how).
      const table = running ? TABLE_OF_STEP[running] : undefined;
      if (leaf.endsWith('.waiting')) {
        cancelledWhileWaiting = true;
        phase.shape = { ...phase.shape, slow: true };
      } else if (table) {
        // Hold the step's write behind a table lock taken before the step can reach it.
        if (visit > 0) return unreplayable('cancelDbStep');
        if (table === 'sites' && running === 'markSiteReady') {
          addEntry(phase, 'creatingAmplify.creatingApp.running', 0, { kind: 'lock', table });
        } else {
          phase.locks.push(table);
        }
      }
      addEntry(phase, leaf, visit, { kind: 'cancel', release: table ? [table] : [] });
      continue;
    }

    if (!isActorEvent(event)) continue;

    if (leaf.endsWith('.waiting')) {
      waits += 1;
      continue;
    }

    if (leaf === 'authenticating') {
      if (event.type.startsWith('xstate.error.')) phase.delivery = 'badSignature';
      continue;
    }
    if (leaf === 'validating') {
      phase.answers = answersOf(event);
      continue;
    }
    if (!running) continue;

    const execution = executions.get(running) ?? 0;
    executions.set(running, execution + 1);
    const error = errorOf(event);
    if (held && DB_STEPS.has(running)) {
      // Held by a table lock; the statement fails (or not) once the lock is let go.
      if (error) planDb(phase, running as DbFaultStep, execution, SQLSTATE[outcomeOf(error)]);
    } else if (held) {
      const rule = httpRule(running, repoName, error ? outcomeOf(error) : 'ok', true);
      if (!rule) throw new Error(`no way to hold ${running} from the outside is known`);
      addEntry(phase, leaf, visit, rule);
    }

    if (!error) {
      if (running === 'findUser' && isUnknownUser(event)) phase.registered = false;
      if (running === 'createSite') phase.expect.makesSite = true;
      const mail = MAIL_OF_STEP[running];
      // An operator's rollback of a failed run tells the requester nothing new.
      const silent = mail === 'failure' && path.variant === 'rollback';
      if (mail && !silent) phase.expect.mails.push(mail);
      continue;
    }

    const outcome = outcomeOf(error);
    const recipient = mailRecipient(running);
    if (held) {
      // Planted above, held until the cancel is in.
    } else if (recipient) {
      addEntry(phase, leaf, visit, {
        kind: 'refuseMail',
        to: recipient,
        code: outcome === 'transient' ? 451 : 550,
      });
    } else if (DB_STEPS.has(running)) {
      planDb(phase, running as DbFaultStep, execution, SQLSTATE[outcome]);
    } else if (running === 'createRepository' && outcome === 'permanent') {
      // The realistic permanent refusal: the name belongs to a repository someone else made.
      phase.nameTaken = true;
    } else {
      const rule = httpRule(running, repoName, outcome);
      if (!rule) throw new Error(`no way to fail ${running} from the outside is known`);
      addEntry(phase, leaf, visit, rule);
    }
  }

  if (cancelledWhileWaiting && waits > 0) return unreplayable('twoPolicies');

  // A cancel while a call is in flight leaves the run where it is: the history lists it once.
  phase.leaves = collapse(path.steps.map((s) => leafOf(s.state)));
  // An operator's rollback keeps the failure of the go it undoes.
  if (path.variant === 'rollback') phase.expect.failedStep = 'startBuilds';
  const earlier =
    phase.start === 'redeliver' ? [firstDelivery()] : earlierGo(path.variant, repoName);

  return { replayable: true, phases: [...earlier, phase] };
}

function unreplayable(reason: UnreplayableReason): Scenario {
  return { replayable: false, reason };
}

function startOf(variant: VariantName): Phase['start'] {
  return variant === 'rollback' ? 'rollback' : 'retry';
}

/**
 * For each position, how many times its leaf was entered before (0 for the first entry). A
 * leaf that repeats the one before it was not left, so it is the same entry.
 */
function entryIndexes(leaves: string[]): number[] {
  const seen = new Map<string, number>();

  return leaves.map((leaf, index) => {
    const count = seen.get(leaf) ?? 0;
    if (index > 0 && leaves[index - 1] === leaf) return count - 1;
    seen.set(leaf, count + 1);

    return count;
  });
}

function collapse(leaves: string[]): string[] {
  return leaves.filter((leaf, index) => index === 0 || leaves[index - 1] !== leaf);
}

function outcomeOf(error: ErrorRecord): 'transient' | 'permanent' {
  return error.retryable ? 'transient' : 'permanent';
}

function answersOf(event: ActorEvent): Phase['answers'] {
  const output = 'output' in event ? (event.output as Record<string, unknown>) : {};
  if ('request' in output) return 'valid';

  return output.requesterEmail === null ? 'badEmail' : 'badRepoName';
}

function isUnknownUser(event: ActorEvent): boolean {
  const output = 'output' in event ? (event.output as { userId?: unknown }) : {};

  return output.userId === null;
}

/** The delivery a repeated one repeats: a submission that goes through untroubled. */
function firstDelivery(): Phase {
  const phase = emptyPhase('submit', { team: true, ops: true, slow: false });
  phase.expect = { makesSite: true, failedStep: undefined, mails: ['success'] };
  phase.leaves = [
    'authenticating',
    'accepted',
    'validating',
    'checkingUser.running',
    'creatingSite.running',
    ...REPO_STEPS,
    ...APP_STEPS,
    'creatingAmplify.recordingDeployment.running',
    'completing.running',
    'notifyingSuccess.running',
    'done',
  ];

  return phase;
}

const REPO_STEPS = [
  'creatingRepo.creatingRepository.running',
  'creatingRepo.awaitingContent.running',
  'creatingRepo.creatingBranches.running',
  'creatingRepo.grantingTeam.running',
  'creatingRepo.recordingRepo.running',
];

const APP_STEPS = [
  'creatingAmplify.creatingApp.running',
  'creatingAmplify.creatingBranches.running',
  'creatingAmplify.startingBuilds.running',
];

/**
 * The failed go an operator's retry or rollback starts from. With a site: Amplify refuses the
 * first build, everything is undone, the job is marked FAILURE. Without one: the user look-up
 * fails for good, so no site row is ever made.
 */
function earlierGo(variant: VariantName, repoName: string): Phase[] {
  if (variant === 'full' || variant === 'bare') return [];

  const phase = emptyPhase('submit', { team: true, ops: true, slow: false });
  if (variant === 'retryUser') {
    phase.dbFaults = { findUser: [SQLSTATE.permanent] };
    phase.expect = { makesSite: false, failedStep: 'findUser', mails: ['failure'] };
    phase.leaves = [
      'authenticating',
      'accepted',
      'validating',
      'checkingUser.running',
      'notifyingFailure.running',
      'failed',
    ];

    return [phase];
  }

  phase.expect = { makesSite: true, failedStep: 'startBuilds', mails: ['failure'] };
  const refuseBuild = httpRule('startBuilds', repoName, 'permanent');
  if (refuseBuild) addEntry(phase, 'creatingAmplify.startingBuilds.running', 0, refuseBuild);
  phase.leaves = [
    'authenticating',
    'accepted',
    'validating',
    'checkingUser.running',
    'creatingSite.running',
    ...REPO_STEPS,
    ...APP_STEPS,
    'rollingBack.deletingApp.running',
    'rollingBack.deletingRepo.running',
    'rollingBack.markingFailed.running',
    'notifyingFailure.running',
    'failed',
  ];

  return [phase];
}
