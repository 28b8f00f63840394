/**
 * Runs site-creation machines and keeps each run durable.
 *
 * `admit` is the webhook's half: it runs a fresh machine through `authenticating`, records the
 * run under its submission id (the unique key that absorbs FormSG's repeated deliveries), and
 * stops. `execute` is the worker's half: it restores a recorded run from its snapshot and drives
 * it to a final state, saving the snapshot and the history after every transition. Both halves
 * meet only through the database, so a run resumes the same way after a crash as after admission.
 */
import { randomUUID } from 'node:crypto';
import { createActor, waitFor, type SnapshotFrom } from 'xstate';
import type { Kysely } from 'kysely';
import type { Database, RunStatus } from '../../db/schema.js';
import {
  appendRunEvents,
  claimRun,
  findRun,
  saveRunProgress,
} from '../../db/runs.repository.js';
import {
  SITE_CREATION_MACHINE_VERSION,
  STEP_OF_STATE,
  type RetryPolicy,
  type SiteCreationInput,
  type SiteCreationEvent,
  type SiteCreationMachine,
  type WebhookDelivery,
} from '../../machines/site-creation.machine.js';
import type { ErrorRecord } from '../errors.js';
import type { Logger } from '../logger.js';
import { holdStepsUntilSaved } from '../steps/step.js';
import { LocalRunLocks, type RunLocks } from './locks.js';
import { eventsBetween, statePath, type RunEventDraft, type SnapshotView } from './history.js';

type RunSnapshot = SnapshotFrom<SiteCreationMachine>;

interface RunActor {
  stop(): void;
  send(event: SiteCreationEvent): void;
}

export interface RunnerOptions {
  db: Kysely<Database>;
  /** The machine with its steps provided. */
  machine: SiteCreationMachine;
  logger: Logger;
  policy: RetryPolicy;
  stepTimeoutMs: number;
  team?: string;
  opsEmail?: string;
  /** Told about every history event as it is written (metrics, live views). */
  observer?: RunObserver;
  /** XState inspection, for live views of running actors (see src/inspect). */
  inspect?: InspectionObserver;
  /** Who may drive which run; one process alone when absent. */
  locks?: RunLocks;
}

/** Receives a run's history events as they are recorded. */
export type RunObserver = (runId: string, events: readonly RunEventDraft[]) => void;

type InspectionObserver = NonNullable<Parameters<typeof createActor>[1]>['inspect'];

export type OperatorAction = 'retry' | 'rollback' | 'cancel';

export type OperatorOutcome =
  | { ok: true; runId: string }
  | {
      ok: false;
      reason: 'not_found' | 'unknown_version' | 'not_running' | 'not_finished' | 'busy';
      message: string;
    };

const drivenElsewhere: OperatorOutcome = {
  ok: false,
  reason: 'busy',
  message: 'the run is being driven right now; try again in a moment',
};

export type Admission =
  | { outcome: 'accepted'; runId: string; submissionId: string }
  | { outcome: 'duplicate'; runId: string; submissionId: string }
  | { outcome: 'rejected'; reason: string; message: string };

/** The run's status for each final state; everything else is still running. */
export function statusOf(path: string): RunStatus {
  const top = path.split('.')[0];
  switch (top) {
    case 'done':
      return 'succeeded';
    case 'failed':
      return 'failed';
    case 'needsCleanup':
      return 'needs_cleanup';
    case 'rejected':
      return 'rejected';
    default:
      return 'running';
  }
}

export class Runner {
  private readonly active = new Map<string, Promise<RunStatus>>();
  private readonly actors = new Map<string, RunActor>();
  private closing = false;
  /** Runs of an unknown machine version, already reported by this process. */
  private readonly unresumable = new Set<string>();
  private readonly locks: RunLocks;

  constructor(private readonly options: RunnerOptions) {
    this.locks = options.locks ?? new LocalRunLocks();
  }

  /**
   * Authenticates a delivery and records its run. Nothing outside the database is touched, so
   * the webhook can answer within FormSG's time limit.
   */
  async admit(delivery: WebhookDelivery): Promise<Admission> {
    const { db, machine, logger } = this.options;
    const runId = randomUUID();
    const actor = createActor(machine, { input: this.inputFor(runId, delivery) });

    actor.start();
    const snapshot = await waitFor(actor, (next) => {
      const path = statePath(next.value);

      return path === 'accepted' || path === 'rejected' || next.status !== 'active';
    });

    if (statePath(snapshot.value) !== 'accepted') {
      actor.stop();
      const error = snapshot.context.failure?.error;

      return {
        outcome: 'rejected',
        reason: error?.code ?? 'invalid_request',
        message: error?.message ?? 'the webhook could not be authenticated',
      };
    }

    const context = snapshot.context;
    const submissionId = context.submissionId as string;
    const persisted = actor.getPersistedSnapshot();

    const { run, claimed } = await claimRun(db, {
      id: runId,
      submissionId,
      formId: context.formId ?? '',
      machineVersion: SITE_CREATION_MACHINE_VERSION,
      state: 'accepted',
      snapshot: persisted as unknown as Record<string, unknown>,
      requesterEmail: null,
      siteName: null,
    });

    if (!claimed) {
      // This delivery's machine ends in `duplicate`; the run that owns the id goes on.
      actor.send({ type: 'admission.duplicate', runId: run.id });
      actor.stop();
      logger.info({ runId: run.id, submissionId }, 'duplicate delivery answered');

      return { outcome: 'duplicate', runId: run.id, submissionId };
    }

    // The recorded snapshot is all a driver needs: it restores it and sends admission.recorded.
    actor.stop();

    await appendRunEvents(db, runId, [
      { type: 'run.accepted', state: 'accepted', detail: { formId: context.formId } },
    ]);
    logger.info({ runId, submissionId }, 'submission accepted');

    return { outcome: 'accepted', runId, submissionId };
  }

  /**
   * Drives a recorded run to a final state. Returns at once with the same promise when the run
   * is already being driven here.
   */
  execute(runId: string): Promise<RunStatus> {
    const running = this.active.get(runId);
    if (running) return running;

    return this.track(runId, () => this.drive(runId));
  }

  /**
   * Stops the given runs here without touching their records, for when this instance lost the
   * right to drive them (its lock connection dropped). Whoever holds them next resumes them.
   */
  suspend(runIds: string[]): void {
    for (const runId of runIds) this.actors.get(runId)?.stop();
  }

  /** Drives `work` under the run's lock, registered as active until it settles. */
  private track(runId: string, work: () => Promise<RunStatus>): Promise<RunStatus> {
    const promise = (async () => {
      if (!(await this.locks.tryAcquire(runId))) return 'running' as const;
      try {
        return await work();
      } finally {
        await this.locks.release(runId);
      }
    })().finally(() => {
      this.active.delete(runId);
      this.actors.delete(runId);
    });
    this.active.set(runId, promise);

    return promise;
  }

  /** Runs being driven in this process. */
  activeRuns(): string[] {
    return [...this.active.keys()];
  }

  /** Waits for every run driven here to settle. */
  async idle(): Promise<void> {
    while (this.active.size > 0) {
      await Promise.allSettled([...this.active.values()]);
    }
  }

  /**
   * Stops every actor without touching their records: each run resumes from its last saved
   * snapshot the next time a runner starts.
   */
  async close(): Promise<void> {
    this.closing = true;
    for (const actor of this.actors.values()) actor.stop();
    await Promise.allSettled([...this.active.values()]);
    await this.locks.close();
  }

  /**
   * Operator controls. `retry` and `rollback` take a failed (or needs-cleanup) run and start a
   * new go of its machine from what the earlier go knew; `cancel` stops a run in flight and
   * rolls it back. Each is recorded in the run's history with who asked.
   */
  async operate(runId: string, action: OperatorAction, by: string): Promise<OperatorOutcome> {
    const { db } = this.options;
    const row = await findRun(db, runId);
    if (!row) return { ok: false, reason: 'not_found', message: 'no run with that id' };
    if (row.machine_version !== SITE_CREATION_MACHINE_VERSION) {
      return {
        ok: false,
        reason: 'unknown_version',
        message: `the run was made by machine ${row.machine_version}, which this code cannot run`,
      };
    }

    const id = row.id;
    const finishedStatuses: RunStatus[] = ['failed', 'needs_cleanup'];
    const event = { type: 'operator.action' as const, actor: by, detail: { action } };

    if (action === 'cancel' || (action === 'rollback' && row.status === 'running')) {
      if (row.status !== 'running') {
        return { ok: false, reason: 'not_running', message: `the run is ${row.status}` };
      }
      if (!this.active.has(id) && !(await this.locks.tryAcquire(id))) return drivenElsewhere;
      await appendRunEvents(db, id, [{ ...event, state: row.state }]);
      if (!this.active.has(id)) this.execute(id).catch(() => undefined);
      await this.sendWhenActive(id, { type: 'run.cancel', by });

      return { ok: true, runId: id };
    }

    if (!finishedStatuses.includes(row.status)) {
      return {
        ok: false,
        reason: 'not_finished',
        message: `only failed runs can be retried or rolled back; this one is ${row.status}`,
      };
    }
    if (this.active.has(id) || !(await this.locks.tryAcquire(id))) return drivenElsewhere;

    const from = (row.snapshot as unknown as RunSnapshot).context;
    const input: SiteCreationInput = {
      ...this.inputFor(id, null),
      resume: { mode: action, from, by },
    };
    const events = [{ ...event, state: row.state }];
    const promise = this.track(id, () => this.drive(id, { input, events }));
    promise.catch((error: unknown) => {
      this.options.logger.error({ runId: id, err: error }, 'operator action failed');
    });

    return { ok: true, runId: id };
  }

  /** Sends an event once the run's actor exists here (it may still be loading). */
  private async sendWhenActive(runId: string, event: SiteCreationEvent): Promise<void> {
    for (let tries = 0; tries < 200; tries += 1) {
      const actor = this.actors.get(runId);
      if (actor) {
        actor.send(event);

        return;
      }
      if (!this.active.has(runId)) return;
      await new Promise((done) => setTimeout(done, 10));
    }
  }

  /** Restores a recorded run (or, for operator actions, starts a new go) and drives it. */
  private async drive(
    runId: string,
    fresh?: { input: SiteCreationInput; events: RunEventDraft[] },
  ): Promise<RunStatus> {
    const { db, machine } = this.options;
    const row = await findRun(db, runId);
    if (!row) throw new Error(`run ${runId} does not exist`);
    if (!fresh && row.status !== 'running') return row.status;
    const logger = this.options.logger.child({ runId, submissionId: row.submission_id });

    if (row.machine_version !== SITE_CREATION_MACHINE_VERSION) {
      // Once per process: the sweep comes back to the run on every pass.
      if (this.unresumable.has(runId)) return row.status;
      this.unresumable.add(runId);
      logger.error(
        { machineVersion: row.machine_version, known: SITE_CREATION_MACHINE_VERSION },
        'run left unresumed: its machine version is unknown to this code',
      );
      await appendRunEvents(db, runId, [
        {
          type: 'run.unresumable',
          state: row.state,
          detail: { machineVersion: row.machine_version, known: SITE_CREATION_MACHINE_VERSION },
        },
      ]);

      return row.status;
    }

    const snapshot = row.snapshot as unknown as RunSnapshot;
    const inspect = this.options.inspect ? { inspect: this.options.inspect } : {};
    const actor = fresh
      ? createActor(machine, { input: fresh.input, ...inspect })
      : createActor(machine, { snapshot, input: this.inputFor(runId, null), ...inspect });
    this.actors.set(runId, actor);

    const persister = new Persister(db, runId, logger, this.options.observer);
    holdStepsUntilSaved(actor.system, () => persister.saved());
    let previous: SnapshotView | null = fresh
      ? null
      : { value: snapshot.value, context: snapshot.context };
    let startedAt: number | null = null;

    // An operator's action heads the history of the go it starts, whichever save comes first.
    let opening: RunEventDraft[] = fresh?.events ?? [];
    const record = (next: RunSnapshot) => {
      const now = Date.now();
      const view: SnapshotView = { value: next.value, context: next.context };
      const events = [...opening, ...eventsBetween(previous, view, startedAt, now)];
      opening = [];
      if (events.some((event) => event.type === 'step.started')) startedAt = now;
      previous = view;
      if (events.length === 0) return;

      persister.save(statePath(next.value), next.context, actor.getPersistedSnapshot(), events);
    };

    actor.subscribe({
      next: (next) => {
        if (this.closing || next.status === 'stopped') return;
        record(next);
      },
      error: (error) => {
        logger.error({ err: error }, 'run machine crashed');
      },
    });

    if (!fresh) persister.resumed(statePath(snapshot.value));
    actor.start();
    if (fresh) {
      // The first state of a new go is saved at once, so a crash now resumes this go.
      record(actor.getSnapshot());
    } else if (statePath(snapshot.value) === 'accepted') {
      actor.send({ type: 'admission.recorded' });
    } else if (actor.getSnapshot().status === 'done') {
      // Saved as final by a go that crashed before its status was written.
      record(actor.getSnapshot());
      persister.save(statePath(snapshot.value), snapshot.context, snapshot, []);
    }

    // Rejects when the actor is stopped (the service is closing): the run stays resumable.
    const final = await waitFor(actor, (next) => next.status !== 'active').catch(() => null);
    await persister.flush();
    if (final?.status !== 'done') return 'running';

    const status = statusOf(statePath(final.value));
    logger.info({ status, state: statePath(final.value) }, 'run finished');

    return status;
  }

  private inputFor(runId: string, delivery: WebhookDelivery | null): SiteCreationInput {
    const { policy, stepTimeoutMs, team, opsEmail } = this.options;

    return {
      runId,
      delivery,
      policy,
      stepTimeoutMs,
      ...(team ? { team } : {}),
      ...(opsEmail ? { opsEmail } : {}),
    };
  }
}

/** Writes a run's progress in order, one transaction at a time. */
class Persister {
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly runId: string,
    private readonly logger: Logger,
    private readonly observer?: RunObserver,
  ) {}

  resumed(state: string): void {
    this.observer?.(this.runId, [{ type: 'run.resumed', state }]);
    this.enqueue(() => appendRunEvents(this.db, this.runId, [{ type: 'run.resumed', state }]));
  }

  save(
    state: string,
    context: RunSnapshot['context'],
    snapshot: unknown,
    events: RunEventDraft[],
  ): void {
    const status = statusOf(state);
    const finished = status !== 'running';
    const drafts: RunEventDraft[] = finished
      ? [...events, { type: 'run.finished', state, detail: { status } }]
      : events;

    for (const event of drafts) this.log(event);
    this.observer?.(this.runId, drafts);

    this.enqueue(async () => {
      await this.db.transaction().execute(async (trx) => {
        await saveRunProgress(trx, this.runId, {
          state,
          status,
          snapshot: snapshot as Record<string, unknown>,
          siteId: context.siteId,
          requesterEmail: context.requesterEmail,
          siteName: context.request?.siteName ?? null,
          resources: {
            repo: context.repo,
            app: context.app,
            leftBehind: context.leftBehind,
            undeliveredMail: context.undelivered ?? [],
          },
          error: (context.failure?.error ?? null) as ErrorRecord | null,
          finishedAt: finished ? new Date() : null,
        });
        await appendRunEvents(trx, this.runId, drafts);
      });
    });
  }

  flush(): Promise<void> {
    return this.chain;
  }

  /** Resolves once every save queued so far is written; rejects when the latest one failed. */
  async saved(): Promise<void> {
    await this.chain;
    if (this.failure !== undefined) throw this.failure;
  }

  private enqueue(work: () => Promise<unknown>): void {
    this.chain = this.chain.then(work).then(
      () => {
        this.failure = undefined;
      },
      (error: unknown) => {
        this.failure = error;
        this.logger.error({ err: error }, 'could not save run progress');
      },
    );
  }

  /** One line per history event, naming the step whenever the event belongs to one. */
  private log(event: RunEventDraft): void {
    // A step's states (running, waiting, deciding) sit one level below the step's own path.
    const path = event.state ?? '';
    const owner = path.includes('.') ? path.slice(0, path.lastIndexOf('.')) : path;
    const step = event.step ?? STEP_OF_STATE[path] ?? STEP_OF_STATE[owner];
    const fields = {
      event: event.type,
      ...(event.state ? { state: event.state } : {}),
      ...(step ? { step } : {}),
      ...(event.attempt ? { attempt: event.attempt } : {}),
      ...(event.durationMs !== undefined ? { durationMs: event.durationMs } : {}),
      ...(event.error ? { error: event.error } : {}),
    };
    if (event.type === 'step.failed') this.logger.warn(fields, 'step failed');
    else if (event.type === 'step.retrying') this.logger.warn(fields, 'step will be retried');
    else this.logger.info(fields, event.type);
  }
}
