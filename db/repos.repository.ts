/**
 * Repos: the GitHub repository of a site, at most one per site.
 */
import { sql, type Kysely } from 'kysely';
import type { Database, RepoRow } from './schema.js';

export type { RepoRow } from './schema.js';

export interface RepoInput {
  siteId: number;
  /** The name GitHub returned, which may differ from the one asked for. */
  name: string;
  url: string;
}

/** Records a site's repository, replacing the name and url of one already recorded. */
export async function upsertRepo(db: Kysely<Database>, repo: RepoInput): Promise<RepoRow> {
  return db
    .insertInto('repos')
    .values({ site_id: repo.siteId, name: repo.name, url: repo.url })
    .onConflict((oc) =>
      oc.column('site_id').doUpdateSet({
        name: repo.name,
        url: repo.url,
        updated_at: sql`now()`,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findRepoBySite(
  db: Kysely<Database>,
  siteId: number,
): Promise<RepoRow | undefined> {
  return db.selectFrom('repos').selectAll().where('site_id', '=', siteId).executeTakeFirst();
}

/** Forgets a site's repository; returns how many rows went (0 when there was none). */
export async function deleteRepoBySite(db: Kysely<Database>, siteId: number): Promise<number> {
  const result = await db.deleteFrom('repos').where('site_id', '=', siteId).executeTakeFirst();

  return Number(result.numDeletedRows);
}
