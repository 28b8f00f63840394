/**
 * Drives runs through pg-boss, a job queue kept in PostgreSQL, so the work spreads over every
 * instance that runs workers. The webhook admits a run and queues its id; whichever worker
 * fetches the job drives the run (still under the run's advisory lock, so a job delivered twice
 * drives nothing twice). An instance with no workers only answers webhooks.
 */
import PgBoss from 'pg-boss';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { listUnfinishedRuns } from '../../db/runs.repository.js';
import type { Logger } from '../logger.js';
import type { RunDriver } from './driver.js';
import type { Runner } from './runner.js';

export const RUN_QUEUE = 'site-runs';

export interface PgBossDriverOptions {
  runner: Runner;
  db: Kysely<Database>;
  logger: Logger;
  databaseUrl: string;
  /** Runs this instance drives at once; 0 makes it a webhook-only instance. */
  concurrency: number;
  /** How often to queue unfinished runs again (a crashed worker's runs come back this way). */
  sweepIntervalMs: number;
}

interface RunJob {
  runId: string;
}

export class PgBossDriver implements RunDriver {
  private readonly boss: PgBoss;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly sending = new Set<Promise<unknown>>();

  private constructor(private readonly options: PgBossDriverOptions) {
    this.boss = new PgBoss({
      connectionString: options.databaseUrl,
      application_name: 'site-orchestrator-queue',
      max: Math.max(2, options.concurrency + 1),
    });
    this.boss.on('error', (error: Error) => {
      options.logger.error({ err: error }, 'job queue error');
    });
  }

  /** Connects, creates the queue when missing, and starts this instance's workers. */
  static async start(options: PgBossDriverOptions): Promise<PgBossDriver> {
    const driver = new PgBossDriver(options);
    await driver.boss.start();
    await driver.boss.createQueue(RUN_QUEUE, {
      name: RUN_QUEUE,
      // One job queued and one active per run: re-queueing a run that waits is a no-op.
      policy: 'stately',
      // A run's retries live in its machine; a job that throws is queued again by the sweep.
      retryLimit: 0,
      expireInSeconds: 60 * 60,
    });

    for (let worker = 0; worker < options.concurrency; worker += 1) {
      await driver.boss.work<RunJob>(
        RUN_QUEUE,
        { batchSize: 1, pollingIntervalSeconds: 0.5 },
        async ([job]) => {
          if (job) await options.runner.execute(job.data.runId);
        },
      );
    }

    driver.sweeper = setInterval(() => {
      driver.resumeUnfinished().catch((error: unknown) => {
        options.logger.error({ err: error }, 'could not queue unfinished runs');
      });
    }, options.sweepIntervalMs);
    driver.sweeper.unref();

    return driver;
  }

  dispatch(runId: string): void {
    // A run whose job is lost here stays unfinished in `runs`, and the sweep queues it again.
    const sent = this.boss
      .send(RUN_QUEUE, { runId }, { singletonKey: runId })
      .catch((error: unknown) => {
        this.options.logger.error({ runId, err: error }, 'could not queue the run');
      })
      .finally(() => this.sending.delete(sent));
    this.sending.add(sent);
  }

  async resumeUnfinished(): Promise<number> {
    const active = new Set(this.options.runner.activeRuns());
    const runs = (await listUnfinishedRuns(this.options.db)).filter((run) => !active.has(run.id));
    await Promise.all(
      runs.map((run) => this.boss.send(RUN_QUEUE, { runId: run.id }, { singletonKey: run.id })),
    );

    return runs.length;
  }

  /** Resolves when this instance drives nothing and no job waits in the queue. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.sending]);
    for (;;) {
      await this.options.runner.idle();
      const waiting = await this.boss.getQueueSize(RUN_QUEUE);
      if (waiting === 0 && this.options.runner.activeRuns().length === 0) return;
      await new Promise((done) => setTimeout(done, 50));
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.boss.offWork(RUN_QUEUE).catch(() => undefined);
    await this.options.runner.close();
    await this.boss.stop({ graceful: false, wait: true });
  }
}
