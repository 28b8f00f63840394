/**
 * A run as operators see it: where it is, what it created, what the site's record says, and
 * everything that happened to it. The same view feeds the HTTP API and the CLI.
 */
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { findRun, runEvents } from '../../db/runs.repository.js';
import { findSite } from '../../db/sites.repository.js';
import { findRepoBySite } from '../../db/repos.repository.js';
import { findDeploymentBySite } from '../../db/deployments.repository.js';
import { SITE_CREATION_MACHINE_VERSION } from '../../machines/site-creation.machine.js';

export interface RunView {
  id: string;
  submissionId: string;
  state: string;
  status: string;
  machineVersion: string;
  /** False when this code does not know the run's machine version: it will not be resumed. */
  resumable: boolean;
  requesterEmail: string | null;
  siteName: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  error: unknown;
  site: { id: number; name: string; siteStatus: string; jobStatus: string } | null;
  repo: { name: string; url: string } | null;
  deployment: { hostingId: string; stagingUrl: string; productionUrl: string } | null;
  resources: unknown;
  history: Array<{
    at: string;
    type: string;
    state: string | null;
    step: string | null;
    attempt: number | null;
    durationMs: number | null;
    error: unknown;
    detail: unknown;
    actor: string | null;
  }>;
}

/** Loads a run by its id or its submission id; undefined when there is none. */
export async function loadRunView(
  db: Kysely<Database>,
  idOrSubmissionId: string,
): Promise<RunView | undefined> {
  const run = await findRun(db, idOrSubmissionId);
  if (!run) return undefined;

  const siteId = run.site_id === null ? null : Number(run.site_id);
  const [site, repo, deployment, events] = await Promise.all([
    siteId === null ? undefined : findSite(db, siteId),
    siteId === null ? undefined : findRepoBySite(db, siteId),
    siteId === null ? undefined : findDeploymentBySite(db, siteId),
    runEvents(db, run.id),
  ]);

  return {
    id: run.id,
    submissionId: run.submission_id,
    state: run.state,
    status: run.status,
    machineVersion: run.machine_version,
    resumable: run.machine_version === SITE_CREATION_MACHINE_VERSION,
    requesterEmail: run.requester_email,
    siteName: run.site_name,
    createdAt: iso(run.created_at),
    updatedAt: iso(run.updated_at),
    finishedAt: run.finished_at ? iso(run.finished_at) : null,
    error: run.error,
    site: site
      ? {
          id: Number(site.id),
          name: site.name,
          siteStatus: site.site_status,
          jobStatus: site.job_status,
        }
      : null,
    repo: repo ? { name: repo.name, url: repo.url } : null,
    deployment: deployment
      ? {
          hostingId: deployment.hosting_id,
          stagingUrl: deployment.staging_url,
          productionUrl: deployment.production_url,
        }
      : null,
    resources: run.resources,
    history: events.map((event) => ({
      at: iso(event.at),
      type: event.type,
      state: event.state,
      step: event.step,
      attempt: event.attempt,
      durationMs: event.duration_ms,
      error: event.error,
      detail: event.detail,
      actor: event.actor,
    })),
  };
}

function iso(value: Date | string): string {
  return value instanceof Date ? value.toISOString() : new Date(value).toISOString();
}
