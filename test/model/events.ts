/**
 * The events a model path is made of: the done and error events of every actor the machine
 * invokes, with payloads shaped like the ones the real steps produce, and the machine's own
 * events. Invoke ids are read from the machine's state nodes, never written out by hand.
 */
import type { AnyStateNode, SnapshotFrom } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import type { ErrorRecord, Service } from '../../src/errors.js';
import { statePath } from '../../src/runs/history.js';
import {
  STEP_OF_STATE,
  siteCreationMachine,
  type AuthenticateOutput,
  type CreatedApp,
  type CreatedRepo,
  type SiteCreationEvent,
  type SiteCreationMachine,
  type StepName,
  type ValidateOutput,
} from '../../machines/site-creation.machine.js';

export type ModelSnapshot = SnapshotFrom<SiteCreationMachine>;

/** The leaf state path of a snapshot, e.g. `creatingRepo.creatingRepository.running`. */
export function leafOf(snapshot: ModelSnapshot): string {
  return statePath(snapshot.value);
}

/** One invoke of the machine: where it is, what it runs, and the step it stands for. */
export interface InvokeSite {
  /** The invoking state's path below the root, e.g. `creatingSite.running`. */
  path: string;
  /** The generated invoke id, e.g. `0.siteCreation.creatingSite.running`. */
  id: string;
  /** The actor's name in `setup({ actors })`. */
  src: string;
  /** The step the invoke runs (`sleep` for the waits between attempts). */
  step: StepName | 'sleep';
}

/** A done or error event of an invoked actor. */
export type ActorEvent =
  | { type: `xstate.done.actor.${string}`; output: unknown }
  | { type: `xstate.error.actor.${string}`; error: unknown };

/** Everything the model feeds the machine. */
export type ModelEvent = SiteCreationEvent | ActorEvent;

/** `siteCreation.creatingRepo.creatingRepository` becomes `creatingRepo.creatingRepository`. */
export function pathOf(node: AnyStateNode): string {
  return node.path.join('.');
}

/** Which step an invoking state runs: its own entry in STEP_OF_STATE or its parent's. */
function stepOf(node: AnyStateNode, src: string): StepName | 'sleep' {
  if (src === 'sleep') return 'sleep';

  const own = STEP_OF_STATE[pathOf(node)];
  const parent = STEP_OF_STATE[node.path.slice(0, -1).join('.')];
  const step = own ?? parent;
  if (step === undefined) throw new Error(`no step is known for the invoke at ${node.id}`);

  return step;
}

/** Every invoke of the machine, in document order. */
export function invokeSites(): InvokeSite[] {
  return getStateNodes(siteCreationMachine.root).flatMap((node) =>
    node.invoke.map((invoke) => ({
      path: pathOf(node),
      id: invoke.id,
      src: String(invoke.src),
      step: stepOf(node, String(invoke.src)),
    })),
  );
}

/** The service behind each step, for realistic error records. */
const SERVICE_OF_STEP: Record<StepName, Service> = {
  authenticate: 'formsg',
  validateRequest: 'formsg',
  findUser: 'database',
  createSite: 'database',
  createRepository: 'github',
  waitForRepoContent: 'github',
  ensureRepoBranches: 'github',
  grantTeam: 'github',
  recordRepo: 'database',
  createApp: 'amplify',
  ensureAppBranches: 'amplify',
  startBuilds: 'amplify',
  recordDeployment: 'database',
  markSiteReady: 'database',
  reopenSite: 'database',
  sendSuccessMail: 'smtp',
  deleteApp: 'amplify',
  deleteRepo: 'github',
  markSiteFailed: 'database',
  sendOpsMail: 'smtp',
  sendFailureMail: 'smtp',
  sendRejectionMail: 'smtp',
};

/** A fault that clears by itself, as the adapters record one for `step`. */
export function transientError(step: StepName): ErrorRecord {
  const service = SERVICE_OF_STEP[step];
  const record = { name: 'TransientError', retryable: true, service };
  switch (service) {
    case 'github':
      return { ...record, message: 'GitHub is unavailable', status: 502 };
    case 'amplify':
      return { ...record, message: 'Amplify is unavailable', status: 503 };
    case 'smtp':
      return { ...record, message: 'the mail server is busy', code: '451' };
    default:
      return { ...record, message: 'the database is busy', code: '40001' };
  }
}

/** A fault that will not clear, as the adapters record one for `step`. */
export function permanentError(step: StepName): ErrorRecord {
  const service = SERVICE_OF_STEP[step];
  const record = { name: 'PermanentError', retryable: false, service };
  switch (service) {
    case 'github':
      return { ...record, message: 'GitHub refused the call', status: 403 };
    case 'amplify':
      return { ...record, message: 'Amplify refused the call', status: 400 };
    case 'smtp':
      return { ...record, message: 'the mail server refused', code: '550' };
    case 'formsg':
      return { ...record, name: 'WebhookRejectedError', message: 'bad_signature' };
    default:
      return { ...record, message: 'the database refused', code: '42501' };
  }
}

/** Sample outputs, shaped as the real steps return them. */
export const SAMPLE = {
  authenticated: {
    submissionId: '65a1b2c3d4e5f60718293a4b',
    formId: '65a1b2c3d4e5f60718293a4c',
    responses: [{ _id: 'f1', question: 'Government E-mail', fieldType: 'email', answer: 'a@b.sg' }],
  } satisfies AuthenticateOutput,
  repo: {
    name: 'model-site',
    fullName: 'site-platform/model-site',
    url: 'https://github.example/site-platform/model-site',
    defaultBranch: 'main',
  } satisfies CreatedRepo,
  app: { appId: 'd1modelapp', defaultDomain: 'd1modelapp.amplifyapp.com' } satisfies CreatedApp,
} as const;

const VALID: ValidateOutput = {
  request: {
    email: 'officer@agency.gov.sg',
    agency: 'Ministry of Examples',
    repoName: SAMPLE.repo.name,
    siteName: 'Model Site',
    pointOfContact: 'Jane Tan',
  },
};

/** A refused answer; without a valid e-mail answer there is nobody to tell. */
const invalid = (field: string, requesterEmail: string | null): ValidateOutput => ({
  invalid: {
    name: 'ValidationError',
    message: 'this answer breaks a rule',
    retryable: false,
    service: 'formsg',
    field,
  },
  requesterEmail,
});

/** The outputs a step can finish with; every one of them is tried. */
function outputsOf(step: StepName): unknown[] {
  switch (step) {
    case 'authenticate':
      return [SAMPLE.authenticated];
    case 'validateRequest':
      return [
        VALID,
        invalid('Repository Name', 'officer@agency.gov.sg'),
        invalid('Government E-mail', null),
      ];
    case 'findUser':
      return [{ userId: 1 }, { userId: null }];
    case 'createSite':
      return [{ siteId: 1 }];
    case 'createRepository':
      return [SAMPLE.repo];
    case 'createApp':
      return [SAMPLE.app];
    default:
      return [undefined];
  }
}

/** Steps whose `onError` has no retry: the webhook's own checks. */
const NEVER_RETRIED = new Set<StepName>(['authenticate', 'validateRequest']);

/** The machine's own events, with the payloads the runner sends. */
export const MACHINE_EVENTS: SiteCreationEvent[] = [
  { type: 'admission.recorded' },
  { type: 'admission.duplicate', runId: 'an-earlier-run' },
  { type: 'run.cancel', by: 'model-operator' },
];

/** The done and error events of every invoke, by invoke id. */
export function actorEvents(): Map<string, ActorEvent[]> {
  const events = new Map<string, ActorEvent[]>();
  for (const site of invokeSites()) {
    const done = `xstate.done.actor.${site.id}` as const;
    const error = `xstate.error.actor.${site.id}` as const;
    if (site.step === 'sleep') {
      events.set(site.id, [
        { type: done, output: undefined },
        { type: error, error: SLEEP_ABORTED },
      ]);
      continue;
    }

    // A step that never retries gets one error: a retryable one would change nothing there.
    const errors = NEVER_RETRIED.has(site.step)
      ? [permanentError(site.step)]
      : [transientError(site.step), permanentError(site.step)];
    events.set(site.id, [
      ...outputsOf(site.step).map((output) => ({ type: done, output })),
      ...errors.map((record) => ({ type: error, error: record })),
    ]);
  }

  return events;
}

const SLEEP_ABORTED: ErrorRecord = {
  name: 'AbortError',
  message: 'the wait was interrupted',
  retryable: false,
  service: 'orchestrator',
};

/** The events worth trying in a snapshot: those of the actors it runs, and the machine's own. */
export function eventsFor(
  children: Record<string, unknown>,
  table: Map<string, ActorEvent[]>,
): ModelEvent[] {
  const forChildren = Object.keys(children).flatMap((id) => table.get(id) ?? []);

  return [...forChildren, ...MACHINE_EVENTS];
}
