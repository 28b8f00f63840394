/**
 * The first schema: users, sites and what each site owns, and the runs that create them.
 *
 * Typed `Kysely<any>` and free of application imports on purpose: a migration describes the
 * database as it was on the day it was written, whatever the code says later.
 */
import { sql, type CreateTableBuilder, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('email', 'text', (col) => col.notNull())
    .$call(timestamps)
    .execute();

  await db.schema
    .createIndex('users_email_lower_key')
    .on('users')
    .unique()
    .expression(sql`lower(email)`)
    .execute();

  await db.schema
    .createTable('sites')
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('site_status', 'text', (col) => col.notNull().defaultTo('INIT'))
    .addColumn('job_status', 'text', (col) => col.notNull().defaultTo('RUNNING'))
    .addColumn('creator_id', 'bigint', (col) => col.notNull().references('users.id'))
    .addColumn('submission_id', 'text', (col) => col.notNull().unique())
    .addColumn('agency', 'text')
    .addColumn('point_of_contact', 'text')
    .$call(timestamps)
    .addCheckConstraint('sites_site_status_check', sql`site_status in ('INIT', 'LAUNCH')`)
    .addCheckConstraint(
      'sites_job_status_check',
      sql`job_status in ('RUNNING', 'READY', 'FAILURE')`,
    )
    .execute();

  await db.schema
    .createTable('repos')
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('site_id', 'bigint', (col) =>
      col.notNull().unique().references('sites.id').onDelete('cascade'),
    )
    .addColumn('name', 'text', (col) => col.notNull())
    .addColumn('url', 'text', (col) => col.notNull())
    .$call(timestamps)
    .execute();

  await db.schema
    .createTable('deployments')
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('site_id', 'bigint', (col) =>
      col.notNull().unique().references('sites.id').onDelete('cascade'),
    )
    .addColumn('hosting_id', 'text', (col) => col.notNull())
    .addColumn('staging_url', 'text', (col) => col.notNull())
    .addColumn('production_url', 'text', (col) => col.notNull())
    .$call(timestamps)
    .execute();

  await db.schema
    .createTable('runs')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('submission_id', 'text', (col) => col.notNull().unique())
    .addColumn('form_id', 'text')
    .addColumn('machine_version', 'text', (col) => col.notNull())
    .addColumn('state', 'text', (col) => col.notNull())
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('running'))
    .addColumn('snapshot', 'jsonb', (col) => col.notNull())
    .addColumn('site_id', 'bigint', (col) => col.references('sites.id').onDelete('set null'))
    .addColumn('requester_email', 'text')
    .addColumn('site_name', 'text')
    .addColumn('resources', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('error', 'jsonb')
    .$call(timestamps)
    .addColumn('finished_at', 'timestamptz')
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', 'timestamptz')
    .addCheckConstraint(
      'runs_status_check',
      sql`status in ('running', 'succeeded', 'failed', 'rejected', 'needs_cleanup')`,
    )
    .execute();

  await db.schema
    .createIndex('runs_status_created_at_idx')
    .on('runs')
    .columns(['status', 'created_at'])
    .execute();

  await db.schema
    .createTable('run_events')
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('run_id', 'text', (col) =>
      col.notNull().references('runs.id').onDelete('cascade'),
    )
    .addColumn('at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('type', 'text', (col) => col.notNull())
    .addColumn('state', 'text')
    .addColumn('step', 'text')
    .addColumn('attempt', 'integer')
    .addColumn('duration_ms', 'integer')
    .addColumn('error', 'jsonb')
    .addColumn('detail', 'jsonb')
    .addColumn('actor', 'text')
    .execute();

  await db.schema
    .createIndex('run_events_run_id_id_idx')
    .on('run_events')
    .columns(['run_id', 'id'])
    .execute();

  await db.schema
    .createTable('mails')
    .addColumn('id', 'bigserial', (col) => col.primaryKey())
    .addColumn('run_id', 'text', (col) =>
      col.notNull().references('runs.id').onDelete('cascade'),
    )
    .addColumn('kind', 'text', (col) => col.notNull())
    .addColumn('recipient', 'text', (col) => col.notNull())
    .addColumn('message_id', 'text', (col) => col.notNull())
    .addColumn('sent_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('mails_run_id_kind_key', ['run_id', 'kind'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['mails', 'run_events', 'runs', 'deployments', 'repos', 'sites', 'users']) {
    await db.schema.dropTable(table).execute();
  }
}

/** `created_at` and `updated_at`, both set by the database on insert. */
function timestamps<T extends string>(table: CreateTableBuilder<T, any>) {
  return table
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`));
}
