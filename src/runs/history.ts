/**
 * Derives a run's history from the machine's snapshots: each pair of consecutive snapshots
 * becomes the events that happened between them (state entered, step started, succeeded,
 * failed or scheduled for a retry). Pure, so it is tested on its own.
 */
import type { ErrorRecord } from '../errors.js';
import {
  STEP_OF_STATE,
  type SiteCreationContext,
  type StepName,
} from '../../machines/site-creation.machine.js';

export type RunEventType =
  | 'run.accepted'
  | 'run.finished'
  | 'run.resumed'
  | 'run.unresumable'
  | 'state.entered'
  | 'step.started'
  | 'step.succeeded'
  | 'step.failed'
  | 'step.retrying'
  | 'operator.action';

export interface RunEventDraft {
  type: RunEventType;
  state?: string;
  step?: StepName;
  attempt?: number;
  durationMs?: number;
  error?: ErrorRecord;
  detail?: Record<string, unknown>;
  actor?: string;
}

/** The slice of a machine snapshot the history needs. */
export interface SnapshotView {
  value: unknown;
  context: SiteCreationContext;
}

/**
 * A state value as the dotted path the runs table and the history keep:
 * `{ creatingRepo: { creatingRepository: 'running' } }` is
 * `creatingRepo.creatingRepository.running`.
 */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    const [key, child] = Object.entries(value as Record<string, unknown>)[0] ?? [];
    if (key === undefined) return '';
    const rest = statePath(child);

    return rest === '' ? key : `${key}.${rest}`;
  }

  return '';
}

/** The step a state path is running, when its leaf is a running step. */
export function runningStep(path: string): StepName | undefined {
  if (STEP_OF_STATE[path] !== undefined && !path.includes('.')) {
    // authenticating and validating invoke directly, without running/waiting children.
    return path === 'authenticating' || path === 'validating' ? STEP_OF_STATE[path] : undefined;
  }
  if (!path.endsWith('.running')) return undefined;

  return STEP_OF_STATE[path.slice(0, -'.running'.length)];
}

/** The attempt number a step is on, counting from 1. */
function attemptOf(context: SiteCreationContext, step: StepName): number {
  return context.retry?.step === step ? context.retry.attempt + 1 : 1;
}

/**
 * The events between two snapshots. `startedAt` is when the previous step started, when known
 * (it is not after a restore), for durations.
 */
export function eventsBetween(
  previous: SnapshotView | null,
  next: SnapshotView,
  startedAt: number | null,
  now: number,
): RunEventDraft[] {
  const before = previous ? statePath(previous.value) : null;
  const after = statePath(next.value);
  if (before === after) return [];

  const events: RunEventDraft[] = [];
  const leftStep = before === null ? undefined : runningStep(before);

  if (previous && leftStep) {
    const durationMs = startedAt === null ? undefined : now - startedAt;
    const attempt = attemptOf(previous.context, leftStep);
    const retry = next.context.retry;
    const newFailure =
      next.context.failure?.step === leftStep && previous.context.failure !== next.context.failure;
    const newLeftBehind = next.context.leftBehind.length > previous.context.leftBehind.length;
    const undelivered = next.context.undelivered ?? [];
    const newUndelivered = undelivered.length > (previous.context.undelivered ?? []).length;

    if (retry && retry.step === leftStep && after.endsWith('.waiting')) {
      events.push({
        type: 'step.retrying',
        step: leftStep,
        attempt,
        ...(durationMs === undefined ? {} : { durationMs }),
        error: retry.error,
        detail: { retryAt: new Date(retry.retryAt).toISOString() },
      });
    } else if (newFailure || newLeftBehind || newUndelivered) {
      const error = newLeftBehind
        ? next.context.leftBehind[next.context.leftBehind.length - 1]?.error
        : newUndelivered
          ? undelivered[undelivered.length - 1]?.error
          : next.context.failure?.error;
      events.push({
        type: 'step.failed',
        step: leftStep,
        attempt,
        ...(durationMs === undefined ? {} : { durationMs }),
        ...(error ? { error } : {}),
      });
    } else {
      events.push({
        type: 'step.succeeded',
        step: leftStep,
        attempt,
        ...(durationMs === undefined ? {} : { durationMs }),
      });
    }
  }

  events.push({ type: 'state.entered', state: after });

  const enteredStep = runningStep(after);
  if (enteredStep) {
    const attempt = attemptOf(next.context, enteredStep);
    events.push({ type: 'step.started', step: enteredStep, attempt });
  }

  return events;
}
