/**
 * Database-side faults for crash tests, keyed by submission so that many runs can be steered at
 * once. They live in the test database itself (a table, two trigger functions, triggers), so a
 * service in another process meets them too; on PGlite they must be written while the test
 * holds the folder, before the service starts.
 *
 * - `freezeAt(submission, state)`: once the run's saved state is `state`, every later save of
 *   the run fails. The runner saves a state before the step it starts touches anything
 *   (write-ahead), so from then on the run can change nothing: the database and the world look
 *   exactly as they would had the process been killed with `state` saved.
 * - `failWrite(submission, 'sites:INSERT', …)`: the run's n-th write of that kind to `sites`,
 *   `repos` or `deployments` fails with a real SQLSTATE (40001 is transient, 23514 permanent).
 * - `cancelNextRead(db, 'users')` (PostgreSQL only): the next query that reads the table is
 *   cancelled by the server (57014), a transient fault for reads no trigger can see.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';

export type WriteTarget =
  | 'sites:INSERT'
  | 'sites:UPDATE'
  | 'repos:INSERT'
  | 'deployments:INSERT';

/** Creates the holds table and its triggers; safe to run once per database. */
export async function installCrashHolds(db: Kysely<Database>): Promise<void> {
  await sql`
    CREATE TABLE crash_holds (
      submission_id text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('freeze', 'fail')),
      target text NOT NULL,
      code text,
      nth integer,
      counter text
    )
  `.execute(db);

  await sql`
    CREATE FUNCTION crash_hold_save() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF OLD.state IS DISTINCT FROM NEW.state AND EXISTS (
        SELECT 1 FROM crash_holds
        WHERE kind = 'freeze' AND submission_id = OLD.submission_id AND target = OLD.state
      ) THEN
        RAISE EXCEPTION 'run frozen at %', OLD.state USING ERRCODE = '55000';
      END IF;
      RETURN NEW;
    END $$
  `.execute(db);
  await sql`
    CREATE TRIGGER crash_hold_save BEFORE UPDATE ON runs
    FOR EACH ROW EXECUTE FUNCTION crash_hold_save()
  `.execute(db);

  // Sequences count attempts: unlike a row, they keep counting when the statement fails.
  await sql`
    CREATE FUNCTION crash_hold_write() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      submission text;
      hold record;
    BEGIN
      IF TG_TABLE_NAME = 'sites' THEN
        submission := NEW.submission_id;
      ELSE
        SELECT s.submission_id INTO submission FROM sites s WHERE s.id = NEW.site_id;
      END IF;
      FOR hold IN
        SELECT * FROM crash_holds
        WHERE kind = 'fail' AND submission_id = submission
          AND target = TG_TABLE_NAME || ':' || TG_OP
      LOOP
        IF nextval(hold.counter::regclass) = hold.nth THEN
          RAISE EXCEPTION 'injected database fault' USING ERRCODE = hold.code;
        END IF;
      END LOOP;
      RETURN NEW;
    END $$
  `.execute(db);
  for (const table of ['sites', 'repos', 'deployments']) {
    await sql`
      CREATE TRIGGER crash_hold_write BEFORE INSERT OR UPDATE ON ${sql.table(table)}
      FOR EACH ROW EXECUTE FUNCTION crash_hold_write()
    `.execute(db);
  }
}

/** From the moment the run's saved state is `state`, none of its saves succeeds. */
export async function freezeAt(
  db: Kysely<Database>,
  submissionId: string,
  state: string,
): Promise<void> {
  await sql`
    INSERT INTO crash_holds (submission_id, kind, target)
    VALUES (${submissionId}, 'freeze', ${state})
  `.execute(db);
}

/** The run's `nth` write of kind `target` fails with SQLSTATE `code`. */
export async function failWrite(
  db: Kysely<Database>,
  submissionId: string,
  target: WriteTarget,
  options: { code: '40001' | '23514'; nth?: number },
): Promise<void> {
  const counter = `crash_hold_${randomBytes(6).toString('hex')}`;
  await sql`CREATE SEQUENCE ${sql.table(counter)}`.execute(db);
  await sql`
    INSERT INTO crash_holds (submission_id, kind, target, code, nth, counter)
    VALUES (${submissionId}, 'fail', ${target}, ${options.code}, ${options.nth ?? 1}, ${counter})
  `.execute(db);
}

/** Drops every hold: runs save and write normally again. */
export async function clearHolds(db: Kysely<Database>): Promise<void> {
  await sql`DELETE FROM crash_holds`.execute(db);
}

/**
 * PostgreSQL only. Locks `table` against reads, waits for the first query that queues behind
 * the lock, cancels it, and lets go. Resolves once the lock is taken; `done` settles when the
 * cancellation has happened.
 */
export async function cancelNextRead(
  db: Kysely<Database>,
  table: 'users',
  timeoutMs = 20_000,
): Promise<{ done: Promise<void> }> {
  let locked!: () => void;
  const ready = new Promise<void>((resolve) => {
    locked = resolve;
  });

  const done = db.transaction().execute(async (trx) => {
    await sql`LOCK TABLE ${sql.table(table)} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    locked();

    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await sql<{ pid: number }>`
        SELECT pid FROM pg_locks WHERE relation = ${table}::regclass AND NOT granted
      `.execute(trx);
      const waiter = rows[0];
      if (waiter) {
        await sql`SELECT pg_cancel_backend(${waiter.pid})`.execute(trx);

        return;
      }
      if (Date.now() > deadline) throw new Error(`no query read ${table} in time`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  });
  // The caller may learn of a failure through `done`; until then it must not go unhandled.
  done.catch(() => undefined);
  await Promise.race([ready, done]);

  return { done };
}
