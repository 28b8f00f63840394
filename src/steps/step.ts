/**
 * Turns a plain async function into one of the machine's promise actors: it gets a signal that
 * aborts when the actor stops or the step's time runs out, and whatever it throws reaches the
 * machine as an ErrorRecord (plain data, safe to persist), never as a live Error.
 */
import { fromPromise } from 'xstate';
import { TransientError, toErrorRecord } from '../errors.js';
import type { StepInput } from '../../machines/site-creation.machine.js';

export type StepFunction<TInput, TOutput> = (
  input: TInput,
  signal: AbortSignal,
) => Promise<TOutput>;

export interface StepOptions {
  /** Overrides the machine's per-step time limit, for steps that poll. */
  timeoutMs?: number;
}

/** Per run, keyed by its actor system: resolves once the run's latest state is saved. */
const saveBarriers = new WeakMap<object, () => Promise<void>>();

/**
 * Write-ahead for one run: every step of the run whose actor system is `system` waits, before
 * it touches anything, until `saved` resolves, that is until the state that started the step
 * is saved. A crash then never leaves effects behind that the saved state knows nothing of.
 * `saved` rejects when the save failed; the step then fails transiently.
 */
export function holdStepsUntilSaved(system: object, saved: () => Promise<void>): void {
  saveBarriers.set(system, saved);
}

/** Wraps `run` as a promise actor with a time limit and error records. */
export function step<TInput extends StepInput, TOutput>(
  run: StepFunction<TInput, TOutput>,
  options: StepOptions = {},
) {
  return fromPromise<TOutput, TInput>(async ({ input, signal, system }) => {
    await untilSaved(system as object, signal);

    const timeoutMs = options.timeoutMs ?? input.timeoutMs;
    const deadline = AbortSignal.timeout(timeoutMs);
    const combined = AbortSignal.any([signal, deadline]);

    try {
      return await raceAbort(run(input, combined), combined);
    } catch (error) {
      if (deadline.aborted && !signal.aborted) {
        const timeout = new TransientError(`${input.step} took longer than ${timeoutMs} ms`, {
          service: 'orchestrator',
          code: 'StepTimeout',
          cause: error,
        });

        throw toErrorRecord(timeout);
      }

      throw toErrorRecord(error);
    }
  });
}

async function untilSaved(system: object, signal: AbortSignal): Promise<void> {
  const saved = saveBarriers.get(system);
  if (!saved) return;

  // XState starts this actor just before it hands the new state to the runner, which queues
  // its save; one turn later that save is queued and `saved()` covers it.
  await Promise.resolve();
  try {
    await raceAbort(saved(), signal);
  } catch (error) {
    if (signal.aborted) throw toErrorRecord(error);

    const unsaved = new TransientError('the run could not be saved before this step', {
      service: 'database',
      code: 'RunNotSaved',
      cause: error,
    });
    throw toErrorRecord(unsaved);
  }
}

/** Rejects as soon as the signal aborts, even when `work` ignores the signal. */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);

  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Waits until `until` (epoch ms), or rejects when the signal aborts. */
export function sleepUntil(until: number, signal: AbortSignal): Promise<void> {
  const ms = Math.max(0, until - Date.now());

  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    // A step that polls sleeps many times on one signal: each sleep takes its listener away.
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
