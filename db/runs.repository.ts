/**
 * Runs: one per submission, holding the machine's snapshot, its current state, what it
 * created, and an append-only history of events; and the e-mails each run has sent.
 */
import { sql, type Kysely } from 'kysely';
import { PermanentError, TransientError } from '../src/errors.js';
import {
  jsonb,
  type Database,
  type MailRow,
  type RunEventRow,
  type RunRow,
  type RunStatus,
} from './schema.js';

export type { MailRow, RunEventRow, RunRow } from './schema.js';

export interface RunClaim {
  /** A fresh uuid for the run. */
  id: string;
  submissionId: string;
  formId: string | null;
  machineVersion: string;
  state: string;
  snapshot: object;
  requesterEmail: string | null;
  siteName: string | null;
}

/**
 * Records a run for a submission unless one exists. `claimed` is true when the returned run
 * is ours (its id is `claim.id`); otherwise `run` is the run an earlier delivery recorded.
 *
 * ```sql
 * insert into runs (…) values (…) on conflict (submission_id) do nothing returning *
 * ```
 */
export async function claimRun(
  db: Kysely<Database>,
  claim: RunClaim,
): Promise<{ run: RunRow; claimed: boolean }> {
  await db
    .insertInto('runs')
    .values({
      id: claim.id,
      submission_id: claim.submissionId,
      form_id: claim.formId,
      machine_version: claim.machineVersion,
      state: claim.state,
      snapshot: jsonb(claim.snapshot),
      requester_email: claim.requesterEmail,
      site_name: claim.siteName,
    })
    .onConflict((oc) => oc.column('submission_id').doNothing())
    .execute();

  const run = await db
    .selectFrom('runs')
    .selectAll()
    .where('submission_id', '=', claim.submissionId)
    .executeTakeFirst();
  if (!run) {
    throw new TransientError('the run was deleted while being claimed', { service: 'database' });
  }

  return { run, claimed: run.id === claim.id };
}

export interface RunProgress {
  state: string;
  status: RunStatus;
  snapshot: object;
  /** Fields left undefined keep their stored value. */
  siteId?: number | null;
  requesterEmail?: string | null;
  siteName?: string | null;
  resources?: object;
  error?: object | null;
  finishedAt?: Date | null;
}

/**
 * Saves where a run is, in one UPDATE that also bumps `updated_at`.
 *
 * @throws PermanentError when there is no run with this id.
 */
export async function saveRunProgress(
  db: Kysely<Database>,
  id: string,
  progress: RunProgress,
): Promise<void> {
  const { siteId, requesterEmail, siteName, resources, error, finishedAt } = progress;

  const result = await db
    .updateTable('runs')
    .set({
      state: progress.state,
      status: progress.status,
      snapshot: jsonb(progress.snapshot),
      updated_at: sql`now()`,
      ...(siteId !== undefined ? { site_id: siteId } : {}),
      ...(requesterEmail !== undefined ? { requester_email: requesterEmail } : {}),
      ...(siteName !== undefined ? { site_name: siteName } : {}),
      ...(resources !== undefined ? { resources: jsonb(resources) } : {}),
      ...(error !== undefined ? { error: error === null ? null : jsonb(error) } : {}),
      ...(finishedAt !== undefined ? { finished_at: finishedAt } : {}),
    })
    .where('id', '=', id)
    .executeTakeFirst();

  if (result.numUpdatedRows === 0n) {
    throw new PermanentError(`no run with id ${id}`, { service: 'database' });
  }
}

/** One entry of a run's history. */
export interface RunEventInput {
  /** Dotted, e.g. `state.entered`, `step.failed`, `operator.action`. */
  type: string;
  state?: string | null;
  step?: string | null;
  attempt?: number | null;
  durationMs?: number | null;
  error?: object | null;
  detail?: object | null;
  actor?: string | null;
  /** Defaults to the database's clock. */
  at?: Date;
}

/**
 * Appends events to a run's history, in the order given, and returns how many were added.
 * Pass a transaction to save them together with `saveRunProgress`.
 */
export async function appendRunEvents(
  db: Kysely<Database>,
  runId: string,
  events: readonly RunEventInput[],
): Promise<number> {
  if (events.length === 0) return 0;

  // One multi-row insert: ids follow the order of the VALUES list.
  const result = await db
    .insertInto('run_events')
    .values(
      events.map((event) => ({
        run_id: runId,
        type: event.type,
        state: event.state ?? null,
        step: event.step ?? null,
        attempt: event.attempt ?? null,
        duration_ms: event.durationMs == null ? null : Math.round(event.durationMs),
        error: event.error ? jsonb(event.error) : null,
        detail: event.detail ? jsonb(event.detail) : null,
        actor: event.actor ?? null,
        ...(event.at ? { at: event.at } : {}),
      })),
    )
    .executeTakeFirst();

  return Number(result.numInsertedOrUpdatedRows ?? 0n);
}

/** A run by its id or by its submission id. */
export async function findRun(
  db: Kysely<Database>,
  idOrSubmissionId: string,
): Promise<RunRow | undefined> {
  return db
    .selectFrom('runs')
    .selectAll()
    .where((eb) =>
      eb.or([eb('id', '=', idOrSubmissionId), eb('submission_id', '=', idOrSubmissionId)]),
    )
    .executeTakeFirst();
}

export interface RunFilter {
  status?: RunStatus;
  /** The exact dotted state path. */
  state?: string;
  /** Defaults to 100. */
  limit?: number;
  offset?: number;
}

/** Runs, newest first. */
export async function listRuns(db: Kysely<Database>, filter: RunFilter = {}): Promise<RunRow[]> {
  const { status, state, limit = 100, offset = 0 } = filter;

  let query = db
    .selectFrom('runs')
    .selectAll()
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .offset(offset);
  if (status) query = query.where('status', '=', status);
  if (state) query = query.where('state', '=', state);

  return query.execute();
}

/** Every run still `running`, oldest first: the runs to resume on start-up. */
export async function listUnfinishedRuns(db: Kysely<Database>): Promise<RunRow[]> {
  return db
    .selectFrom('runs')
    .selectAll()
    .where('status', '=', 'running')
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

/** A run's history, in the order it was appended. */
export async function runEvents(db: Kysely<Database>, runId: string): Promise<RunEventRow[]> {
  return db
    .selectFrom('run_events')
    .selectAll()
    .where('run_id', '=', runId)
    .orderBy('id')
    .execute();
}

export interface MailRecord {
  runId: string;
  /** `outcome`, `ops`, …: a run sends each kind at most once. */
  kind: string;
  messageId: string;
  recipient: string;
}

/** Records a sent e-mail; false when this run's mail of this kind was recorded already. */
export async function recordMail(db: Kysely<Database>, mail: MailRecord): Promise<boolean> {
  const inserted = await db
    .insertInto('mails')
    .values({
      run_id: mail.runId,
      kind: mail.kind,
      message_id: mail.messageId,
      recipient: mail.recipient,
    })
    .onConflict((oc) => oc.columns(['run_id', 'kind']).doNothing())
    .returning('id')
    .executeTakeFirst();

  return inserted !== undefined;
}

export async function findMail(
  db: Kysely<Database>,
  runId: string,
  kind: string,
): Promise<MailRow | undefined> {
  return db
    .selectFrom('mails')
    .selectAll()
    .where('run_id', '=', runId)
    .where('kind', '=', kind)
    .executeTakeFirst();
}
