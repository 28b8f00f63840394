/**
 * What drives recorded runs to completion. The webhook only admits runs and hands their ids to a
 * driver; the driver decides where they execute. This one runs them in this process; a driver
 * backed by a Postgres job queue can take its place without touching the machine or the steps.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { listUnfinishedRuns } from '../../db/runs.repository.js';
import type { Logger } from '../logger.js';
import type { Runner } from './runner.js';

export interface RunDriver {
  /** Starts driving a recorded run; returns without waiting for it. */
  dispatch(runId: string): void;
  /** Dispatches every run that is not in a final state; returns how many. */
  resumeUnfinished(): Promise<number>;
  /** Resolves when no dispatched run is still being driven. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export class InProcessDriver implements RunDriver {
  private sweeper: NodeJS.Timeout | undefined;

  /**
   * With `sweepIntervalMs`, unfinished runs are looked for again on that interval, so a run
   * whose instance crashed (its lock is gone with it) is picked up by a live one.
   */
  constructor(
    private readonly runner: Runner,
    private readonly db: Kysely<Database>,
    private readonly logger: Logger,
    sweepIntervalMs?: number,
  ) {
    if (sweepIntervalMs) {
      this.sweeper = setInterval(() => {
        this.resumeUnfinished().catch((error: unknown) => {
          this.logger.error({ err: error }, 'could not look for unfinished runs');
        });
      }, sweepIntervalMs);
      this.sweeper.unref();
    }
  }

  dispatch(runId: string): void {
    this.runner.execute(runId).catch((error: unknown) => {
      this.logger.error({ runId, err: error }, 'run could not be driven');
    });
  }

  async resumeUnfinished(): Promise<number> {
    const active = new Set(this.runner.activeRuns());
    const runs = (await listUnfinishedRuns(this.db)).filter((run) => !active.has(run.id));
    for (const run of runs) this.dispatch(run.id);
    if (runs.length > 0) this.logger.info({ count: runs.length }, 'resuming unfinished runs');

    return runs.length;
  }

  idle(): Promise<void> {
    return this.runner.idle();
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);

    return this.runner.close();
  }
}
