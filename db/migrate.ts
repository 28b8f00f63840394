/**
 * Brings a database to the latest schema with Kysely's Migrator.
 *
 * The migrations are imported, not found by scanning a folder, so the same code works from
 * `tsx`, vitest and a bundle. Add a migration by importing it and listing it in `MIGRATIONS`;
 * the Migrator applies them in the order of their names.
 */
import { Migrator, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { PermanentError, TransientError } from '../src/errors.js';
import { toDatabaseError } from './errors.js';
import * as initial from './migrations/0001_initial.js';

/** Every migration, by name. */
export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_initial': initial,
};

class StaticMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return { ...MIGRATIONS };
  }
}

/**
 * Applies every pending migration and returns the names of those it applied (none when the
 * database is already up to date). Safe to call from several processes at once: the Migrator
 * holds a lock while it works.
 *
 * @throws TransientError or PermanentError (service `database`) naming the failed migration.
 */
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new StaticMigrationProvider() });

  const { error, results = [] } = await migrator.migrateToLatest();

  if (error !== undefined) {
    const failed = results.find((result) => result.status === 'Error')?.migrationName;
    const cause = toDatabaseError(error);
    // The driver's own words say what to fix ("database x does not exist", "password
    // authentication failed"); they carry no secrets.
    const detail = (cause.cause instanceof Error ? cause.cause.message : '') || cause.message;
    const message = failed
      ? `database migration ${failed} failed: ${detail}`
      : `database migrations could not be applied: ${detail}`;
    const options = { service: 'database' as const, cause, ...codeOf(cause) };

    throw cause.retryable
      ? new TransientError(message, options)
      : new PermanentError(message, options);
  }

  return results
    .filter((result) => result.status === 'Success')
    .map((result) => result.migrationName);
}

function codeOf(error: { code: string | undefined }): { code?: string } {
  return error.code === undefined ? {} : { code: error.code };
}
