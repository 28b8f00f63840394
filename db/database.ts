/**
 * Opens the database: PostgreSQL through a `pg` pool when a URL is given, otherwise PGlite,
 * in-process, on disk or in memory.
 *
 * Both answer alike: `bigint` (ids, counts) as number, `timestamptz` as Date, jsonb parsed,
 * and faults as typed errors (see `./errors.ts`).
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely, PostgresDialect, type Dialect } from 'kysely';
import pg from 'pg';
import { typedErrorsDialect } from './errors.js';
import { lockFolder } from './folder-lock.js';
import { PGliteDialect } from './pglite-dialect.js';
import type { Database } from './schema.js';

export interface DatabaseConfig {
  /** A PostgreSQL URL. When set, PGlite is not used. */
  databaseUrl?: string;
  /** The PGlite data folder, created if missing. Without it PGlite runs in memory. */
  pgliteDir?: string;
  /** A PGlite data directory dump (`dumpDataDir()`) to start from; the folder must be new. */
  pgliteDataDir?: Blob;
  /** Called when an idle pooled connection fails; the pool drops it and reconnects later. */
  onIdleError?: (error: Error) => void;
}

export type DatabaseKind = 'pglite' | 'postgres';

export interface OpenedDatabase {
  db: Kysely<Database>;
  kind: DatabaseKind;
  /** Closes the pool or PGlite, waiting for queries in flight. */
  close(): Promise<void>;
}

/**
 * `bigint`'s type oid. `pg` returns it as a string by default; ours are ids and counts, far
 * below 2^53, so both drivers are told to return a number.
 */
const INT8_OID = 20;

/** Opens the database `config` names. Nothing is migrated: call `migrateToLatest`. */
export async function openDatabase(config: DatabaseConfig): Promise<OpenedDatabase> {
  if (config.databaseUrl) {
    const dialect = postgresDialect(config.databaseUrl, config.onIdleError);
    const db = new Kysely<Database>({ dialect: typedErrorsDialect(dialect) });

    return { db, kind: 'postgres', close: () => db.destroy() };
  }

  if (config.pgliteDir) await mkdir(resolve(config.pgliteDir), { recursive: true });
  const unlock = config.pgliteDir ? await lockFolder(resolve(config.pgliteDir)) : undefined;
  const pglite = await openPGlite(config).catch(async (error: unknown) => {
    await unlock?.();
    throw error;
  });
  const dialect = new PGliteDialect({ pglite });
  const db = new Kysely<Database>({ dialect: typedErrorsDialect(dialect) });

  const close = async () => {
    await db.destroy();
    // Kysely skips the driver's destroy when no query ever ran.
    if (!pglite.closed) await pglite.close();
    await unlock?.();
  };

  return { db, kind: 'pglite', close };
}

async function openPGlite(config: DatabaseConfig): Promise<PGlite> {
  const dataDir = config.pgliteDir ? resolve(config.pgliteDir) : undefined;
  if (dataDir) await mkdir(dataDir, { recursive: true });

  return PGlite.create({
    ...(dataDir ? { dataDir } : {}),
    ...(config.pgliteDataDir ? { loadDataDir: config.pgliteDataDir } : {}),
    parsers: {
      [INT8_OID]: (value: string) => Number(value),
    },
  });
}

function postgresDialect(url: string, onIdleError?: (error: Error) => void): Dialect {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: 'site-orchestrator',
    connectionTimeoutMillis: 10_000,
    types: { getTypeParser },
  });

  // Without a listener, an idle connection's failure (a server restart) ends the process.
  pool.on('error', (error) => onIdleError?.(error));

  return new PostgresDialect({ pool });
}

function getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  if (oid === INT8_OID && format !== 'binary') return (value: string) => Number(value);

  return pg.types.getTypeParser(oid, format) as (value: string) => unknown;
}
