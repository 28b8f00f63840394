/**
 * Who may drive a run. Several service instances can share one PostgreSQL database; each run
 * must be driven by one of them at a time. On PostgreSQL an instance holds a session-level
 * advisory lock per run on a connection of its own, so a crashed instance's locks vanish with
 * its connection and a peer can pick the run up at once. PGlite is one process by nature, so
 * there a set in memory is enough.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';

export interface RunLocks {
  /** True when this instance now holds the run (or already did). */
  tryAcquire(runId: string): Promise<boolean>;
  release(runId: string): Promise<void>;
  close(): Promise<void>;
}

/** For a database only this process can open. */
export class LocalRunLocks implements RunLocks {
  private readonly held = new Set<string>();

  async tryAcquire(runId: string): Promise<boolean> {
    if (this.held.has(runId)) return true;
    this.held.add(runId);

    return true;
  }

  async release(runId: string): Promise<void> {
    this.held.delete(runId);
  }

  async close(): Promise<void> {
    this.held.clear();
  }
}

/** The two 32-bit keys of a run's advisory lock. */
export function advisoryKeys(runId: string): [number, number] {
  const digest = createHash('sha256').update(`site-run:${runId}`).digest();

  return [digest.readInt32BE(0), digest.readInt32BE(4)];
}

/** Session-level advisory locks on a dedicated PostgreSQL connection. */
export class AdvisoryRunLocks implements RunLocks {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private readonly held = new Set<string>();

  /** `onLost` is told when the lock connection drops: every lock it held is gone. */
  constructor(
    private readonly url: string,
    private readonly onLost: (runIds: string[], error: Error) => void,
  ) {}

  async tryAcquire(runId: string): Promise<boolean> {
    if (this.held.has(runId)) return true;

    const client = await this.connect();
    const [a, b] = advisoryKeys(runId);
    const result = await client.query<{ locked: boolean }>(
      'SELECT pg_try_advisory_lock($1, $2) AS locked',
      [a, b],
    );
    const locked = result.rows[0]?.locked === true;
    if (locked) this.held.add(runId);

    return locked;
  }

  async release(runId: string): Promise<void> {
    if (!this.held.delete(runId) || !this.client) return;

    const [a, b] = advisoryKeys(runId);
    await this.client.query('SELECT pg_advisory_unlock($1, $2)', [a, b]).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.held.clear();
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = new pg.Client({
        connectionString: this.url,
        application_name: 'site-orchestrator-locks',
        connectionTimeoutMillis: 10_000,
      });
      client.on('error', (error) => this.lost(client, error));
      client.on('end', () => this.lost(client, new Error('the lock connection ended')));
      await client.connect();
      this.client = client;

      return client;
    })().finally(() => {
      this.connecting = undefined;
    });

    return this.connecting;
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== client) return;

    this.client = undefined;
    const runIds = [...this.held];
    this.held.clear();
    if (runIds.length > 0) this.onLost(runIds, error);
  }
}
