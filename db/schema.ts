/**
 * The tables as Kysely sees them. Column names stay snake_case, as in the database.
 *
 * `bigserial` ids and counts come back as numbers and `timestamptz` as Date on both PGlite and
 * PostgreSQL (`openDatabase` sets the parsers). jsonb columns come back parsed, but go in as
 * JSON text (`jsonb(value)`): `pg` would turn a JS array into a PostgreSQL array literal.
 */
import type { ColumnType, Generated, Selectable } from 'kysely';
import { PermanentError } from '../src/errors.js';

/** Every site status: `INIT` until the site's first release, then `LAUNCH`. */
export const SITE_STATUSES = ['INIT', 'LAUNCH'] as const;
export type SiteStatus = (typeof SITE_STATUSES)[number];

/** Every job status: how the site-creation job went. */
export const JOB_STATUSES = ['RUNNING', 'READY', 'FAILURE'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Every run status; all but `running` are final. */
export const RUN_STATUSES = [
  'running',
  'succeeded',
  'failed',
  'rejected',
  'needs_cleanup',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/** A JSON object as stored in a jsonb column. */
export type JsonObject = Record<string, unknown>;

/** A jsonb column: read as `T`, written as JSON text. */
export type Jsonb<T> = ColumnType<T, string, string>;

/** A nullable jsonb column. */
export type NullableJsonb<T> = ColumnType<T | null, string | null | undefined, string | null>;

/** A jsonb column with a database default. */
export type GeneratedJsonb<T> = ColumnType<T, string | undefined, string>;

/** A `timestamptz not null default now()` column. */
export type CreatedAt = ColumnType<Date, Date | string | undefined, Date | string>;

/** A nullable `timestamptz` column. */
export type NullableTimestamp = ColumnType<
  Date | null,
  Date | string | null | undefined,
  Date | string | null
>;

export interface UsersTable {
  id: Generated<number>;
  /** As given, trimmed; unique regardless of case. */
  email: string;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface SitesTable {
  id: Generated<number>;
  name: string;
  site_status: Generated<SiteStatus>;
  job_status: Generated<JobStatus>;
  creator_id: number;
  /** The FormSG submission that asked for the site; unique. */
  submission_id: string;
  agency: string | null;
  point_of_contact: string | null;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface ReposTable {
  id: Generated<number>;
  /** Unique: a site has at most one repository. */
  site_id: number;
  name: string;
  url: string;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface DeploymentsTable {
  id: Generated<number>;
  /** Unique: a site has at most one deployment. */
  site_id: number;
  /** The Amplify app id. */
  hosting_id: string;
  staging_url: string;
  production_url: string;
  created_at: CreatedAt;
  updated_at: CreatedAt;
}

export interface RunsTable {
  /** A uuid, stored as text. */
  id: string;
  /** Unique: FormSG delivers a submission at least once; one run answers all deliveries. */
  submission_id: string;
  form_id: string | null;
  machine_version: string;
  /** The machine's state as a dotted path, e.g. `creatingRepo.creatingRepository`. */
  state: string;
  status: Generated<RunStatus>;
  /** The machine's persisted snapshot. */
  snapshot: Jsonb<JsonObject>;
  site_id: number | null;
  requester_email: string | null;
  site_name: string | null;
  /** Ids of everything the run created outside the database. */
  resources: GeneratedJsonb<JsonObject>;
  error: NullableJsonb<JsonObject>;
  created_at: CreatedAt;
  updated_at: CreatedAt;
  finished_at: NullableTimestamp;
  /** Which worker drives the run, for a multi-worker driver; unused so far. */
  lease_owner: string | null;
  lease_expires_at: NullableTimestamp;
}

export interface RunEventsTable {
  id: Generated<number>;
  run_id: string;
  at: CreatedAt;
  /** Dotted, e.g. `state.entered`, `step.failed`, `mail.sent`, `operator.action`. */
  type: string;
  state: string | null;
  step: string | null;
  attempt: number | null;
  duration_ms: number | null;
  error: NullableJsonb<JsonObject>;
  detail: NullableJsonb<JsonObject>;
  /** Who caused the event when it was a person (operator actions). */
  actor: string | null;
}

export interface MailsTable {
  id: Generated<number>;
  run_id: string;
  /** `outcome`, `ops`, …; unique per run. */
  kind: string;
  recipient: string;
  message_id: string;
  sent_at: CreatedAt;
}

/** The whole database, for `Kysely<Database>`. */
export interface Database {
  users: UsersTable;
  sites: SitesTable;
  repos: ReposTable;
  deployments: DeploymentsTable;
  runs: RunsTable;
  run_events: RunEventsTable;
  mails: MailsTable;
}

export type UserRow = Selectable<UsersTable>;
export type SiteRow = Selectable<SitesTable>;
export type RepoRow = Selectable<ReposTable>;
export type DeploymentRow = Selectable<DeploymentsTable>;
export type RunRow = Selectable<RunsTable>;
export type RunEventRow = Selectable<RunEventsTable>;
export type MailRow = Selectable<MailsTable>;

/**
 * Serialises a value for a jsonb column. Both drivers accept JSON text for jsonb; `pg` would
 * turn a bare array into a PostgreSQL array literal instead.
 */
export function jsonb(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) {
    throw new PermanentError('the value has no JSON form', { service: 'database' });
  }

  return text;
}
