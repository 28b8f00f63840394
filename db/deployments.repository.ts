/**
 * Deployments: the Amplify app serving a site, at most one per site.
 */
import { sql, type Kysely } from 'kysely';
import type { Database, DeploymentRow } from './schema.js';

export type { DeploymentRow } from './schema.js';

export interface DeploymentInput {
  siteId: number;
  /** The Amplify app id. */
  hostingId: string;
  stagingUrl: string;
  productionUrl: string;
}

/** Records a site's deployment, replacing the one already recorded. */
export async function upsertDeployment(
  db: Kysely<Database>,
  deployment: DeploymentInput,
): Promise<DeploymentRow> {
  const values = {
    hosting_id: deployment.hostingId,
    staging_url: deployment.stagingUrl,
    production_url: deployment.productionUrl,
  };

  return db
    .insertInto('deployments')
    .values({ site_id: deployment.siteId, ...values })
    .onConflict((oc) => oc.column('site_id').doUpdateSet({ ...values, updated_at: sql`now()` }))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findDeploymentBySite(
  db: Kysely<Database>,
  siteId: number,
): Promise<DeploymentRow | undefined> {
  return db
    .selectFrom('deployments')
    .selectAll()
    .where('site_id', '=', siteId)
    .executeTakeFirst();
}

/** Forgets a site's deployment; returns how many rows went (0 when there was none). */
export async function deleteDeploymentBySite(
  db: Kysely<Database>,
  siteId: number,
): Promise<number> {
  const result = await db
    .deleteFrom('deployments')
    .where('site_id', '=', siteId)
    .executeTakeFirst();

  return Number(result.numDeletedRows);
}
