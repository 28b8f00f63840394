/**
 * Sites: one per accepted submission, with its launch and job status.
 */
import { sql, type Kysely } from 'kysely';
import { PermanentError, TransientError } from '../src/errors.js';
import type { Database, JobStatus, SiteRow, SiteStatus } from './schema.js';

export type { SiteRow } from './schema.js';

export interface NewSiteInput {
  name: string;
  creatorId: number;
  submissionId: string;
  agency: string | null;
  pointOfContact: string | null;
}

/**
 * Records the site a submission asks for. Idempotent on the submission id: when the site
 * exists already, it is returned unchanged.
 */
export async function insertSite(db: Kysely<Database>, site: NewSiteInput): Promise<SiteRow> {
  const inserted = await db
    .insertInto('sites')
    .values({
      name: site.name,
      creator_id: site.creatorId,
      submission_id: site.submissionId,
      agency: site.agency,
      point_of_contact: site.pointOfContact,
    })
    .onConflict((oc) => oc.column('submission_id').doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return inserted;

  const existing = await findSiteBySubmission(db, site.submissionId);
  // Only a delete between the two statements gets here; trying again will insert.
  if (!existing) {
    throw new TransientError('the site was deleted while being added', { service: 'database' });
  }

  return existing;
}

export async function findSite(db: Kysely<Database>, id: number): Promise<SiteRow | undefined> {
  return db.selectFrom('sites').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function findSiteBySubmission(
  db: Kysely<Database>,
  submissionId: string,
): Promise<SiteRow | undefined> {
  return db
    .selectFrom('sites')
    .selectAll()
    .where('submission_id', '=', submissionId)
    .executeTakeFirst();
}

export interface SiteStatusChange {
  siteStatus?: SiteStatus;
  jobStatus?: JobStatus;
}

/**
 * Sets a site's statuses (those given) and its `updated_at`.
 *
 * @throws PermanentError when there is no site with this id.
 */
export async function setSiteStatus(
  db: Kysely<Database>,
  id: number,
  change: SiteStatusChange,
): Promise<SiteRow> {
  const updated = await db
    .updateTable('sites')
    .set({
      updated_at: sql`now()`,
      ...(change.siteStatus ? { site_status: change.siteStatus } : {}),
      ...(change.jobStatus ? { job_status: change.jobStatus } : {}),
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();

  if (!updated) {
    throw new PermanentError(`no site with id ${id}`, { service: 'database' });
  }

  return updated;
}
