/**
 * Fresh, migrated, isolated databases for tests, fast.
 *
 * PGlite: the schema is migrated once per process into an in-memory PGlite, dumped, and every
 * test database is a clone of that dump (about half a second instead of three).
 *
 * PostgreSQL (only when `TEST_DATABASE_URL` is set): a template database is migrated once and
 * shared by every worker; each test database is `CREATE DATABASE … TEMPLATE` of it and is
 * dropped on close. The template's name carries a hash of the migrations, so a changed
 * migration gets a new template; it is built under a new name and renamed when complete, under
 * an advisory lock, so concurrent workers never see half a template.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { Kysely } from 'kysely';
import pg from 'pg';
import { openDatabase, type DatabaseKind } from '../../db/database.js';
import { MIGRATIONS, migrateToLatest } from '../../db/migrate.js';
import { PGliteDialect } from '../../db/pglite-dialect.js';
import type { Database } from '../../db/schema.js';

export interface TestDatabase {
  kind: DatabaseKind;
  /** Replaced by `reopen()`. */
  db: Kysely<Database>;
  /** Closes the database and deletes it (the database, or the PGlite folder). */
  close(): Promise<void>;
  /** PostgreSQL: a URL a child process can use. */
  url?: string;
  /** PGlite with `onDisk`: the folder a child process can open through `PGLITE_DIR`. */
  pgliteDir?: string;
  /**
   * PGlite with `onDisk`: closes `db` but keeps the folder. PGlite is single-process, so do
   * this before a child process opens the folder, and `reopen()` after it has exited.
   */
  release?(): Promise<void>;
  /** PGlite with `onDisk`: opens the folder again as `db`. */
  reopen?(): Promise<Kysely<Database>>;
}

export interface TestDatabaseOptions {
  /** PGlite only: keep the data in a temporary folder rather than in memory. */
  onDisk?: boolean;
}

const postgresUrl = process.env.TEST_DATABASE_URL;

/** The databases every database test runs on: PGlite, and PostgreSQL when configured. */
export const databaseKinds: DatabaseKind[] = postgresUrl ? ['pglite', 'postgres'] : ['pglite'];

/** A new database of `kind` with the latest schema and no rows. */
export async function createTestDatabase(
  kind: DatabaseKind,
  options: TestDatabaseOptions = {},
): Promise<TestDatabase> {
  if (kind === 'pglite') return createPGliteDatabase(options);

  if (!postgresUrl) throw new Error('TEST_DATABASE_URL is not set: no PostgreSQL to test on');
  if (options.onDisk) throw new Error('onDisk applies to PGlite only');

  return createPostgresDatabase(postgresUrl);
}

let pgliteTemplate: Promise<Blob> | undefined;

async function createPGliteDatabase(options: TestDatabaseOptions): Promise<TestDatabase> {
  pgliteTemplate ??= migratedPGliteDump();
  const dump = await pgliteTemplate;

  if (!options.onDisk) {
    const { db, close } = await openDatabase({ pgliteDataDir: dump });

    return { kind: 'pglite', db, close };
  }

  const dir = await mkdtemp(join(tmpdir(), 'site-orchestrator-pglite-'));
  let opened: { db: Kysely<Database>; close(): Promise<void> } | undefined = await openDatabase({
    pgliteDir: dir,
    pgliteDataDir: dump,
  });

  const database: TestDatabase = {
    kind: 'pglite',
    db: opened.db,
    pgliteDir: dir,
    async release() {
      const closing = opened;
      opened = undefined;
      await closing?.close();
    },
    async reopen() {
      await database.release?.();
      opened = await openDatabase({ pgliteDir: dir });
      database.db = opened.db;

      return opened.db;
    },
    async close() {
      await database.release?.();
      await rm(dir, { recursive: true, force: true });
    },
  };

  return database;
}

async function migratedPGliteDump(): Promise<Blob> {
  const pglite = await PGlite.create();
  const db = new Kysely<Database>({
    dialect: new PGliteDialect({ pglite, closeOnDestroy: false }),
  });

  try {
    await migrateToLatest(db);

    return await pglite.dumpDataDir('none');
  } finally {
    await db.destroy();
    await pglite.close();
  }
}

let postgresTemplate: Promise<string> | undefined;

async function createPostgresDatabase(url: string): Promise<TestDatabase> {
  postgresTemplate ??= ensurePostgresTemplate(url);
  const template = await postgresTemplate;
  const name = `t_${randomBytes(8).toString('hex')}`;

  await withAdmin(url, (admin) =>
    admin.query(`create database ${quote(name)} template ${quote(template)}`),
  );

  const databaseUrl = urlFor(url, name);
  const { db, close } = await openDatabase({ databaseUrl });

  return {
    kind: 'postgres',
    db,
    url: databaseUrl,
    async close() {
      await close();
      // FORCE ends connections a child process may have left behind.
      await withAdmin(url, (admin) => admin.query(`drop database ${quote(name)} with (force)`));
    },
  };
}

/** Creates the template for the current migrations unless it exists; returns its name. */
async function ensurePostgresTemplate(url: string): Promise<string> {
  const name = `tmpl_site_orchestrator_${migrationsHash()}`;

  return withAdmin(url, async (admin) => {
    // Session lock: released when this connection ends, even if the process dies.
    await admin.query('select pg_advisory_lock(hashtext($1))', [name]);
    try {
      const found = await admin.query('select 1 from pg_database where datname = $1', [name]);
      if (found.rowCount) return name;

      // A leftover of ours: a build of this very template that died half-way.
      const building = `${name}_building`;
      await admin.query(`drop database if exists ${quote(building)} with (force)`);
      await admin.query(`create database ${quote(building)}`);

      const { db, close } = await openDatabase({ databaseUrl: urlFor(url, building) });
      try {
        await migrateToLatest(db);
      } finally {
        await close();
      }

      await admin.query(`alter database ${quote(building)} rename to ${quote(name)}`);
      await admin.query(`alter database ${quote(name)} is_template true`);

      return name;
    } finally {
      await admin.query('select pg_advisory_unlock(hashtext($1))', [name]);
    }
  });
}

/** Changes whenever a migration's name or code changes. */
function migrationsHash(): string {
  const hash = createHash('sha256');
  for (const [name, migration] of Object.entries(MIGRATIONS)) {
    hash.update(name).update(String(migration.up)).update(String(migration.down ?? ''));
  }

  return hash.digest('hex').slice(0, 12);
}

async function withAdmin<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();

  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

function urlFor(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;

  return parsed.toString();
}

function quote(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}
