/**
 * The site-creation statechart. One actor of this machine runs per FormSG submission.
 *
 * The machine is pure: it names its actors, guards and actions, and `src/steps` plugs real
 * implementations in with `machine.provide()`. Every invoke has an `onError`; every state that
 * calls the outside world is declared in its `meta.calls`, and its actor receives a `timeoutMs`.
 *
 * Retries: a step that fails with a retryable error moves to its sibling `waiting` state, whose
 * `sleep` actor waits until `context.retry.retryAt`. The deadline lives in context, so a run
 * restored from a snapshot sleeps only what remains.
 */
import { assign, fromPromise, setup } from 'xstate';
import type { ErrorRecord } from '../src/errors.js';

/** Bump when a change makes persisted snapshots of the previous version unsafe to resume. */
export const SITE_CREATION_MACHINE_VERSION = 'site-creation@1';

/** What the machine needs from the webhook to authenticate it. */
export interface WebhookDelivery {
  signature: string | undefined;
  body: unknown;
}

/** The answers of one submission, read by question title. */
export interface SiteRequest {
  email: string;
  agency: string;
  repoName: string;
  siteName: string;
  pointOfContact: string;
}

export interface CreatedRepo {
  name: string;
  fullName: string;
  url: string;
  defaultBranch: string;
}

export interface CreatedApp {
  appId: string;
  defaultDomain: string;
}

/** Something an undo could not remove, for the operations e-mail. */
export interface LeftBehind {
  kind: 'repository' | 'amplify-app' | 'database';
  id: string;
  where: string;
  error: ErrorRecord;
}

export interface RetryState {
  step: StepName;
  /** How many attempts have failed so far. */
  attempt: number;
  firstFailedAt: number;
  retryAt: number;
  /** The error of the last failed attempt. */
  error: ErrorRecord;
}

export interface RetryPolicy {
  maxAttempts: number;
  maxElapsedMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** An operator's second go at a finished run, carrying what the earlier go knew. */
export interface ResumeRequest {
  mode: 'retry' | 'rollback';
  from: SiteCreationContext;
  /** Who asked: the admin token's name. */
  by: string;
}

export interface SiteCreationInput {
  runId: string;
  delivery: WebhookDelivery | null;
  /** Present when an operator retries or rolls back a finished run. */
  resume?: ResumeRequest;
  policy: RetryPolicy;
  stepTimeoutMs: number;
  /** A team to grant push access; the grant is skipped when absent. */
  team?: string;
  /** An operations address to tell when an undo fails. */
  opsEmail?: string;
}

export interface SiteCreationContext {
  runId: string;
  /** Cleared once authenticated: the encrypted body is not kept. */
  delivery: WebhookDelivery | null;
  policy: RetryPolicy;
  stepTimeoutMs: number;
  team: string | null;
  opsEmail: string | null;
  submissionId: string | null;
  formId: string | null;
  /** Raw answers, kept until validated. */
  responses: unknown[] | null;
  requesterEmail: string | null;
  request: SiteRequest | null;
  userId: number | null;
  siteId: number | null;
  /** Set when the run starts creating a repository or app, so an undo knows to look. */
  attempted: { repo: boolean; app: boolean };
  repo: CreatedRepo | null;
  app: CreatedApp | null;
  retry: RetryState | null;
  /** The error that sent the run to rollback (or to a rejection). */
  failure: { step: StepName | 'cancelled'; error: ErrorRecord } | null;
  undone: string[];
  leftBehind: LeftBehind[];
  cancelledBy: string | null;
  /** 0 for the first go; each operator retry or rollback adds one. */
  generation: number;
  /** Outcome e-mails that could not be sent; the outcome they report stands. */
  undelivered: Array<{ kind: MailKind; error: ErrorRecord }>;
  /** How this go started, when an operator started it. */
  resumeMode: 'retry' | 'rollback' | null;
}

/** The steps that build the site, in the order they run; each is a `forwardStep` state. */
type ForwardActor =
  | 'createSite'
  | 'createRepository'
  | 'waitForRepoContent'
  | 'ensureRepoBranches'
  | 'grantTeam'
  | 'recordRepo'
  | 'createApp'
  | 'ensureAppBranches'
  | 'startBuilds'
  | 'recordDeployment'
  | 'markSiteReady';

/** The names of the steps, one per invoking state. */
export type StepName =
  | 'authenticate'
  | 'validateRequest'
  | 'findUser'
  | ForwardActor
  | 'reopenSite'
  | 'sendSuccessMail'
  | 'deleteApp'
  | 'deleteRepo'
  | 'markSiteFailed'
  | 'sendOpsMail'
  | 'sendFailureMail'
  | 'sendRejectionMail';

export type SiteCreationEvent =
  | { type: 'admission.recorded' }
  | { type: 'admission.duplicate'; runId: string }
  | { type: 'run.cancel'; by: string };

export interface AuthenticateOutput {
  submissionId: string;
  formId: string;
  responses: unknown[];
}

/** A valid request, or the answer that was wrong and whom to tell. */
export type ValidateOutput =
  | { request: SiteRequest }
  | { invalid: ErrorRecord; requesterEmail: string | null };

export type FindUserOutput = { userId: number } | { userId: null };

/** What an undo did: `removed` is false when there was nothing of this run's to remove. */
export interface UndoOutput {
  removed: boolean;
}

export type MailKind = 'success' | 'failure' | 'rejection' | 'ops';

/** What every step actor receives: the run as it stands, and how long the call may take. */
export interface StepInput {
  step: StepName;
  context: SiteCreationContext;
  timeoutMs: number;
}

export interface SleepInput {
  until: number;
}

/**
 * Which step each invoking state runs, keyed by the state's path without its `running` leaf.
 * The runner reads it to write step events into a run's history.
 */
export const STEP_OF_STATE: Readonly<Record<string, StepName>> = {
  authenticating: 'authenticate',
  validating: 'validateRequest',
  checkingUser: 'findUser',
  creatingSite: 'createSite',
  'creatingRepo.creatingRepository': 'createRepository',
  'creatingRepo.awaitingContent': 'waitForRepoContent',
  'creatingRepo.creatingBranches': 'ensureRepoBranches',
  'creatingRepo.grantingTeam': 'grantTeam',
  'creatingRepo.recordingRepo': 'recordRepo',
  'creatingAmplify.creatingApp': 'createApp',
  'creatingAmplify.creatingBranches': 'ensureAppBranches',
  'creatingAmplify.startingBuilds': 'startBuilds',
  'creatingAmplify.recordingDeployment': 'recordDeployment',
  completing: 'markSiteReady',
  reopening: 'reopenSite',
  notifyingSuccess: 'sendSuccessMail',
  'rollingBack.deletingApp': 'deleteApp',
  'rollingBack.deletingRepo': 'deleteRepo',
  'rollingBack.markingFailed': 'markSiteFailed',
  notifyingOps: 'sendOpsMail',
  notifyingFailure: 'sendFailureMail',
  notifyingRejection: 'sendRejectionMail',
};

/** Final states, and what each means for the run. */
export const FINAL_STATES = ['rejected', 'duplicate', 'done', 'failed', 'needsCleanup'] as const;
export type FinalState = (typeof FINAL_STATES)[number];

/** Placeholder implementations: `src/steps` provides the real ones. */
function unprovided<TOutput>(name: string) {
  return fromPromise<TOutput, StepInput>(async () => {
    throw new Error(`actor "${name}" was not provided`);
  });
}

const stepInput =
  (step: StepName) =>
  ({ context }: { context: SiteCreationContext }): StepInput => ({
    step,
    context,
    timeoutMs: context.stepTimeoutMs,
  });

/** Exponential backoff with full jitter, never shorter than what the server asked for. */
export function backoffDelay(policy: RetryPolicy, attempt: number, error: ErrorRecord): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  const jittered = Math.round(Math.random() * ceiling);

  return Math.max(jittered, error.retryAfterMs ?? 0);
}

type ErrorEvent = { error: unknown };

/** The output of the `xstate.done.actor.*` event an action or guard runs on. */
function outputOf<T>(event: unknown): T {
  return (event as { output: T }).output;
}

function errorOf(event: unknown): ErrorRecord {
  const error: unknown = (event as ErrorEvent).error;
  if (error !== null && typeof error === 'object' && 'retryable' in error) {
    return error as ErrorRecord;
  }

  return {
    name: 'UnexpectedError',
    message: error instanceof Error ? error.message : String(error),
    retryable: false,
    service: 'orchestrator',
  };
}

const retryOrFail = (step: StepName, failTarget: string) =>
  [
    {
      guard: { type: 'canRetry', params: { step } },
      target: 'waiting',
      actions: { type: 'scheduleRetry', params: { step } },
    },
    { target: failTarget, actions: { type: 'recordFailure', params: { step } } },
  ] as const;

const undoOrLeave = (step: StepName, next: string) =>
  [
    {
      guard: { type: 'canRetry', params: { step } },
      target: 'waiting',
      actions: { type: 'scheduleRetry', params: { step } },
    },
    { target: next, actions: { type: 'recordLeftBehind', params: { step } } },
  ] as const;

const waiting = {
  invoke: {
    src: 'sleep',
    input: ({ context }: { context: SiteCreationContext }): SleepInput => ({
      until: context.retry?.retryAt ?? 0,
    }),
    onDone: { target: 'running' },
    onError: { target: 'running' },
  },
} as const;

/** A cancel while a step waits to retry takes effect at once: nothing is in flight. */
const cancelNow = {
  'run.cancel': { target: '#siteCreation.rollingBack', actions: 'recordCancel' },
} as const;

/** A cancel while a step's call is in flight waits for the call's answer. */
const cancelLater = { 'run.cancel': { actions: 'requestCancel' } } as const;


/**
 * A forward step: on to `next` when it succeeds, back through `waiting` when it fails
 * transiently, to rollback when it fails for good. An operator's cancel takes effect when the
 * step's call has answered, so the rollback knows whether the call created something.
 */
const forwardStep = (
  src: ForwardActor,
  next: string,
  calls: string[],
  extra: {
    description?: string;
    /** Keeps the step's output in context. */
    store?: 'storeSite' | 'storeRepo' | 'storeApp';
    /** Marks, on entry, that the run is about to create something an undo must look for. */
    entry?: 'markRepoAttempted' | 'markAppAttempted';
    /** A guard that must hold for the step to run at all. */
    skipUnless?: 'hasTeam';
  } = {},
) => {
  const done = extra.store ?? 'clearRetry';

  return {
    ...(extra.description ? { description: extra.description } : {}),
    meta: { calls },
    ...(extra.entry ? { entry: extra.entry } : {}),
    initial: extra.skipUnless ? 'deciding' : 'running',
    states: {
      ...(extra.skipUnless
        ? {
            deciding: {
              always: [{ guard: extra.skipUnless, target: 'running' }, { target: next }],
            },
          }
        : {}),
      running: {
        on: cancelLater,
        invoke: {
          src,
          input: stepInput(src),
          onDone: [
            {
              guard: 'cancelRequested',
              target: '#siteCreation.rollingBack',
              actions: [done, 'recordCancel'],
            },
            { target: next, actions: done },
          ],
          onError: [
            {
              guard: 'cancelRequested',
              target: '#siteCreation.rollingBack',
              actions: 'recordCancel',
            },
            ...retryOrFail(src, '#siteCreation.rollingBack'),
          ],
        },
      },
      waiting: { ...waiting, on: cancelNow },
    },
  } as const;
};

/**
 * An undo. It runs only when `when` holds (the run may never have got that far); when it fails
 * for good, what it could not remove is recorded and the rollback carries on with the next undo.
 */
const undoStep = (options: {
  src: 'deleteApp' | 'deleteRepo' | 'markSiteFailed';
  when: 'appAttempted' | 'repoAttempted' | 'siteExists';
  next: string;
  /** What to record as undone; nothing is recorded for bookkeeping undos. */
  undone?: string;
  calls: string[];
}) =>
  ({
    meta: { calls: options.calls },
    initial: 'deciding',
    states: {
      deciding: {
        always: [{ guard: options.when, target: 'running' }, { target: options.next }],
      },
      running: {
        invoke: {
          src: options.src,
          input: stepInput(options.src),
          onDone: {
            target: options.next,
            actions: { type: 'recordUndone', params: { what: options.undone ?? null } },
          },
          onError: undoOrLeave(options.src, options.next),
        },
      },
      waiting,
    },
  }) as const;

type Outcome = { guard?: 'hasLeftBehind'; target: string };

/**
 * An e-mail step. Whether the mail goes out or not, the run moves on to `next`: a mail that
 * cannot be sent never changes the outcome it reports. `skipUnless` names a guard that must
 * hold for the mail to be sent at all.
 */
const mailStep = (
  kind: MailKind,
  step: StepName,
  next: readonly Outcome[],
  extra: { description: string; skipUnless?: 'opsConfigured' | 'hasRequesterEmail' },
) => {
  const running = {
    invoke: {
      src: 'sendMail',
      input: ({ context }: { context: SiteCreationContext }) => ({
        ...stepInput(step)({ context }),
        kind,
      }),
      onDone: next.map((outcome) => ({ ...outcome, actions: 'clearRetry' as const })),
      onError: [
        {
          guard: { type: 'canRetry', params: { step } },
          target: 'waiting',
          actions: { type: 'scheduleRetry', params: { step } },
        },
        ...next.map((outcome) => ({
          ...outcome,
          actions: { type: 'recordUndelivered', params: { kind } } as const,
        })),
      ],
    },
  } as const;
  const skip = extra.skipUnless;

  return {
    description: extra.description,
    meta: { calls: ['smtp'] },
    initial: skip ? 'deciding' : 'running',
    states: {
      ...(skip
        ? {
            deciding: {
              always: [{ guard: skip, target: 'running' }, { target: next.at(-1)?.target }],
            },
          }
        : {}),
      running,
      waiting,
    },
  } as const;
};

export const siteCreationMachine = setup({
  types: {
    context: {} as SiteCreationContext,
    input: {} as SiteCreationInput,
    events: {} as SiteCreationEvent,
  },
  actors: {
    authenticate: unprovided<AuthenticateOutput>('authenticate'),
    validateRequest: unprovided<ValidateOutput>('validateRequest'),
    findUser: unprovided<FindUserOutput>('findUser'),
    createSite: unprovided<{ siteId: number }>('createSite'),
    createRepository: unprovided<CreatedRepo>('createRepository'),
    waitForRepoContent: unprovided<void>('waitForRepoContent'),
    ensureRepoBranches: unprovided<void>('ensureRepoBranches'),
    grantTeam: unprovided<void>('grantTeam'),
    recordRepo: unprovided<void>('recordRepo'),
    createApp: unprovided<CreatedApp>('createApp'),
    ensureAppBranches: unprovided<void>('ensureAppBranches'),
    startBuilds: unprovided<void>('startBuilds'),
    recordDeployment: unprovided<void>('recordDeployment'),
    markSiteReady: unprovided<void>('markSiteReady'),
    reopenSite: unprovided<void>('reopenSite'),
    deleteApp: unprovided<UndoOutput>('deleteApp'),
    deleteRepo: unprovided<UndoOutput>('deleteRepo'),
    markSiteFailed: unprovided<void>('markSiteFailed'),
    sendMail: fromPromise<void, StepInput & { kind: MailKind }>(async () => {
      throw new Error('actor "sendMail" was not provided');
    }),
    sleep: fromPromise<void, SleepInput>(async () => {
      throw new Error('actor "sleep" was not provided');
    }),
  },
  guards: {
    canRetry: ({ context, event }, params: { step: StepName }) => {
      const error = errorOf(event);
      if (!error.retryable) return false;

      const previous = context.retry?.step === params.step ? context.retry : null;
      const attempt = (previous?.attempt ?? 0) + 1;
      const firstFailedAt = previous?.firstFailedAt ?? Date.now();

      return attempt < context.policy.maxAttempts &&
        Date.now() - firstFailedAt < context.policy.maxElapsedMs;
    },
    requestValid: ({ event }) => {
      const { output } = event as unknown as { output: ValidateOutput };

      return 'request' in output;
    },
    hasRequesterEmail: ({ context }) => context.requesterEmail !== null,
    userFound: ({ event }) => {
      const { output } = event as unknown as { output: FindUserOutput };

      return output.userId !== null;
    },
    hasTeam: ({ context }) => context.team !== null,
    appAttempted: ({ context }) => context.attempted.app,
    repoAttempted: ({ context }) => context.attempted.repo,
    siteExists: ({ context }) => context.siteId !== null,
    hasLeftBehind: ({ context }) => context.leftBehind.length > 0,
    opsConfigured: ({ context }) => context.opsEmail !== null,
    isRetry: ({ context }) => context.resumeMode === 'retry',
    cancelRequested: ({ context }) => context.cancelledBy !== null,
    isRollback: ({ context }) => context.resumeMode === 'rollback',
  },
  actions: {
    scheduleRetry: assign(({ context, event }, params: { step: StepName }) => {
      const error = errorOf(event);
      const sameStep = context.retry?.step === params.step;
      const attempt = sameStep ? (context.retry?.attempt ?? 0) + 1 : 1;
      const firstFailedAt = sameStep ? (context.retry?.firstFailedAt ?? Date.now()) : Date.now();
      const retryAt = Date.now() + backoffDelay(context.policy, attempt, error);

      return { retry: { step: params.step, attempt, firstFailedAt, retryAt, error } };
    }),
    clearRetry: assign({ retry: null }),
    storeSite: assign(({ event }) => ({
      siteId: outputOf<{ siteId: number }>(event).siteId,
      retry: null,
    })),
    storeRepo: assign(({ event }) => ({ repo: outputOf<CreatedRepo>(event), retry: null })),
    storeApp: assign(({ event }) => ({ app: outputOf<CreatedApp>(event), retry: null })),
    markRepoAttempted: assign(({ context }) => ({
      attempted: { ...context.attempted, repo: true },
    })),
    markAppAttempted: assign(({ context }) => ({
      attempted: { ...context.attempted, app: true },
    })),
    recordFailure: assign(({ event }, params: { step: StepName }) => ({
      failure: { step: params.step, error: errorOf(event) },
      retry: null,
    })),
    recordUndelivered: assign(({ context, event }, params: { kind: MailKind }) => ({
      undelivered: [...context.undelivered, { kind: params.kind, error: errorOf(event) }],
      retry: null,
    })),
    recordLeftBehind: assign(({ context, event }, params: { step: StepName }) => {
      const error = errorOf(event);
      const item = leftBehindFor(context, params.step, error);

      return { leftBehind: [...context.leftBehind, item], retry: null };
    }),
    recordUndone: assign(({ context, event }, params: { what: string | null }) => {
      // Only what was really removed is claimed as undone, in e-mails and the history.
      const removed = outputOf<UndoOutput | undefined>(event)?.removed === true;
      const undone =
        params.what !== null && removed ? [...context.undone, params.what] : context.undone;

      return { undone, retry: null };
    }),
    requestCancel: assign(({ context, event }) => ({
      cancelledBy: event.type === 'run.cancel' ? event.by : (context.cancelledBy ?? 'operator'),
    })),
    recordCancel: assign(({ context, event }) => {
      const by = event.type === 'run.cancel' ? event.by : (context.cancelledBy ?? 'operator');

      return {
        cancelledBy: by,
        retry: null,
        failure: {
          step: 'cancelled' as const,
          error: {
            name: 'CancelledError',
            message: 'the run was cancelled by an operator',
            retryable: false,
            service: 'orchestrator' as const,
          },
        },
      };
    }),
  },
}).createMachine({
  id: 'siteCreation',
  initial: 'starting',
  context: ({ input }) => initialContext(input),
  states: {
    starting: {
      description:
        'A new submission authenticates; an operator retry or rollback picks up a finished run.',
      always: [
        { guard: 'isRetry', target: 'reopening' },
        { guard: 'isRollback', target: 'rollingBack' },
        { target: 'authenticating' },
      ],
    },
    reopening: {
      description:
        'Operator retry: the site goes back to RUNNING and creation resumes, reusing what exists.',
      meta: { calls: ['database'] },
      initial: 'running',
      states: {
        running: {
          invoke: {
            src: 'reopenSite',
            input: stepInput('reopenSite'),
            onDone: [
              {
                guard: 'siteExists',
                target: '#siteCreation.creatingRepo',
                actions: 'clearRetry',
              },
              { target: '#siteCreation.checkingUser', actions: 'clearRetry' },
            ],
            onError: retryOrFail('reopenSite', '#siteCreation.rollingBack'),
          },
        },
        waiting,
      },
    },
    authenticating: {
      description:
        'Verifies the FormSG signature against the configured URL and decrypts the body.',
      invoke: {
        src: 'authenticate',
        input: stepInput('authenticate'),
        onDone: {
          target: 'accepted',
          actions: assign(({ event }) => ({
            delivery: null,
            submissionId: event.output.submissionId,
            formId: event.output.formId,
            responses: event.output.responses,
          })),
        },
        onError: {
          target: 'rejected',
          actions: { type: 'recordFailure', params: { step: 'authenticate' } },
        },
      },
    },
    rejected: {
      description: 'The webhook failed authentication: answered 400, nothing stored.',
      type: 'final',
    },
    accepted: {
      description: 'Authenticated; waits for the runner to record the run under its submission id.',
      on: {
        'admission.recorded': { target: 'validating' },
        'admission.duplicate': { target: 'duplicate' },
      },
    },
    duplicate: {
      description: 'Another run already owns this submission id; nothing new starts.',
      type: 'final',
    },
    validating: {
      description: 'Reads the answers by question title and checks them against GitHub name rules.',
      invoke: {
        src: 'validateRequest',
        input: stepInput('validateRequest'),
        onDone: [
          {
            guard: 'requestValid',
            target: 'checkingUser',
            actions: assign(({ event }) => {
              const { request } = event.output as { request: SiteRequest };

              return { request, requesterEmail: request.email, responses: null };
            }),
          },
          {
            target: 'notifyingRejection',
            actions: assign(({ event }) => {
              const output = event.output as Extract<ValidateOutput, { invalid: ErrorRecord }>;

              return {
                requesterEmail: output.requesterEmail,
                responses: null,
                failure: { step: 'validateRequest' as const, error: output.invalid },
              };
            }),
          },
        ],
        onError: {
          target: 'failed',
          actions: { type: 'recordFailure', params: { step: 'validateRequest' } },
        },
      },
    },
    checkingUser: {
      description: 'Looks the requester up in users, ignoring case.',
      meta: { calls: ['database'] },
      initial: 'running',
      states: {
        running: {
          invoke: {
            src: 'findUser',
            input: stepInput('findUser'),
            onDone: [
              {
                guard: 'userFound',
                target: '#siteCreation.creatingSite',
                actions: assign(({ event }) => ({ userId: event.output.userId, retry: null })),
              },
              {
                target: '#siteCreation.notifyingRejection',
                actions: assign({
                  retry: null,
                  failure: {
                    step: 'findUser' as StepName,
                    error: {
                      name: 'UnknownUserError',
                      message: 'the requester is not a registered user',
                      retryable: false,
                      service: 'database' as const,
                    },
                  },
                }),
              },
            ],
            onError: retryOrFail('findUser', '#siteCreation.notifyingFailure'),
          },
        },
        waiting,
      },
    },
    creatingSite: forwardStep('createSite', '#siteCreation.creatingRepo', ['database'], {
      description: 'Inserts the sites row: INIT / RUNNING, linked to its creator.',
      store: 'storeSite',
    }),
    creatingRepo: {
      description:
        'Creates the GitHub repository, its staging and master branches, and the repos row.',
      initial: 'creatingRepository',
      onDone: { target: 'creatingAmplify' },
      states: {
        creatingRepository: forwardStep(
          'createRepository',
          '#siteCreation.creatingRepo.awaitingContent',
          ['github'],
          { store: 'storeRepo', entry: 'markRepoAttempted' },
        ),
        awaitingContent: forwardStep(
          'waitForRepoContent',
          '#siteCreation.creatingRepo.creatingBranches',
          ['github'],
          { description: 'A repository made from a template fills in a moment after creation.' },
        ),
        creatingBranches: forwardStep(
          'ensureRepoBranches',
          '#siteCreation.creatingRepo.grantingTeam',
          ['github'],
        ),
        grantingTeam: forwardStep(
          'grantTeam',
          '#siteCreation.creatingRepo.recordingRepo',
          ['github'],
          { skipUnless: 'hasTeam' },
        ),
        recordingRepo: forwardStep(
          'recordRepo',
          '#siteCreation.creatingRepo.repoReady',
          ['database'],
        ),
        repoReady: { type: 'final' },
      },
    },
    creatingAmplify: {
      description:
        'Creates the Amplify app, its master and staging branches, their first builds ' +
        'and the deployments row.',
      initial: 'creatingApp',
      onDone: { target: 'completing' },
      states: {
        creatingApp: forwardStep(
          'createApp',
          '#siteCreation.creatingAmplify.creatingBranches',
          ['amplify'],
          { store: 'storeApp', entry: 'markAppAttempted' },
        ),
        creatingBranches: forwardStep(
          'ensureAppBranches',
          '#siteCreation.creatingAmplify.startingBuilds',
          ['amplify'],
        ),
        startingBuilds: forwardStep(
          'startBuilds',
          '#siteCreation.creatingAmplify.recordingDeployment',
          ['amplify'],
        ),
        recordingDeployment: forwardStep(
          'recordDeployment',
          '#siteCreation.creatingAmplify.appReady',
          ['database'],
        ),
        appReady: { type: 'final' },
      },
    },
    completing: forwardStep('markSiteReady', '#siteCreation.notifyingSuccess', ['database'], {
      description: 'Marks the site LAUNCH / READY.',
    }),
    notifyingSuccess: mailStep('success', 'sendSuccessMail', [{ target: '#siteCreation.done' }], {
      description: 'E-mails the URLs. A mail failure never turns a ready site into a failed one.',
    }),
    done: {
      description: 'The site is LAUNCH / READY.',
      type: 'final',
    },
    rollingBack: {
      description: 'Undoes, newest first, exactly what this run created, then records FAILURE.',
      initial: 'deletingApp',
      onDone: [
        { guard: 'hasLeftBehind', target: 'notifyingOps' },
        { target: 'notifyingFailure' },
      ],
      states: {
        deletingApp: undoStep({
          src: 'deleteApp',
          when: 'appAttempted',
          next: '#siteCreation.rollingBack.deletingRepo',
          undone: 'amplify-app',
          calls: ['amplify', 'database'],
        }),
        deletingRepo: undoStep({
          src: 'deleteRepo',
          when: 'repoAttempted',
          next: '#siteCreation.rollingBack.markingFailed',
          undone: 'repository',
          calls: ['github', 'database'],
        }),
        markingFailed: undoStep({
          src: 'markSiteFailed',
          when: 'siteExists',
          next: '#siteCreation.rollingBack.rolledBack',
          calls: ['database'],
        }),
        rolledBack: { type: 'final' },
      },
    },
    notifyingOps: mailStep('ops', 'sendOpsMail', [{ target: '#siteCreation.notifyingFailure' }], {
      description: 'Tells the operations address what an undo left behind.',
      skipUnless: 'opsConfigured',
    }),
    notifyingFailure: mailStep(
      'failure',
      'sendFailureMail',
      [
        { guard: 'hasLeftBehind', target: '#siteCreation.needsCleanup' },
        { target: '#siteCreation.failed' },
      ],
      { description: 'Tells the requester which step failed and what was undone.' },
    ),
    notifyingRejection: mailStep(
      'rejection',
      'sendRejectionMail',
      [{ target: '#siteCreation.failed' }],
      {
        description: 'Tells the requester why the request was refused before anything was created.',
        skipUnless: 'hasRequesterEmail',
      },
    ),
    failed: {
      description: 'The request failed; whatever the run had created was undone.',
      type: 'final',
    },
    needsCleanup: {
      description: 'An undo failed for good; the operations address was told what is left.',
      type: 'final',
    },
  },
});

/** The context a run starts with: fresh, or carried over from an earlier go by an operator. */
export function initialContext(input: SiteCreationInput): SiteCreationContext {
  const fresh: SiteCreationContext = {
    runId: input.runId,
    delivery: input.delivery,
    policy: input.policy,
    stepTimeoutMs: input.stepTimeoutMs,
    team: input.team ?? null,
    opsEmail: input.opsEmail ?? null,
    submissionId: null,
    formId: null,
    responses: null,
    requesterEmail: null,
    request: null,
    userId: null,
    siteId: null,
    attempted: { repo: false, app: false },
    repo: null,
    app: null,
    retry: null,
    failure: null,
    undone: [],
    leftBehind: [],
    cancelledBy: null,
    generation: 0,
    undelivered: [],
    resumeMode: null,
  };
  const resume = input.resume;
  if (!resume) return fresh;

  const from = resume.from;

  return {
    ...fresh,
    delivery: null,
    submissionId: from.submissionId,
    formId: from.formId,
    requesterEmail: from.requesterEmail,
    request: from.request,
    userId: from.userId,
    siteId: from.siteId,
    attempted: from.attempted,
    repo: from.repo,
    app: from.app,
    failure: resume.mode === 'rollback' ? from.failure : null,
    generation: from.generation + 1,
    resumeMode: resume.mode,
  };
}

function leftBehindFor(
  context: SiteCreationContext,
  step: StepName,
  error: ErrorRecord,
): LeftBehind {
  if (step === 'deleteApp') {
    const id = context.app?.appId ?? `app tagged with run ${context.runId}`;

    return { kind: 'amplify-app', id, where: 'AWS Amplify', error };
  }
  if (step === 'deleteRepo') {
    const id = context.repo?.fullName ?? context.request?.repoName ?? 'unknown repository';

    return { kind: 'repository', id, where: 'GitHub', error };
  }

  return { kind: 'database', id: `site ${context.siteId ?? '?'}`, where: 'sites table', error };
}

export type SiteCreationMachine = typeof siteCreationMachine;
