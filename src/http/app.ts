/**
 * The HTTP edge: FormSG's webhook and the admin API. Status codes are chosen here and only here.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import type { AdminToken } from '../config.js';
import type { Logger } from '../logger.js';
import type { RunDriver } from '../runs/driver.js';
import type { Runner } from '../runs/runner.js';
import { loadRunView } from '../runs/view.js';
import { listRuns } from '../../db/runs.repository.js';
import { RUN_STATUSES, type RunStatus } from '../../db/schema.js';
import { requireAdmin, type AdminVariables } from './admin-auth.js';
import { createDashboard } from './dashboard/index.js';
import { countWebhookAnswers, PROMETHEUS_CONTENT_TYPE, type Metrics } from '../metrics.js';

export interface AppDependencies {
  db: Kysely<Database>;
  runner: Runner;
  driver: RunDriver;
  logger: Logger;
  adminTokens: AdminToken[];
  /** Served at `GET /metrics` (admin token) and fed by the webhook's answers, when given. */
  metrics?: Metrics;
}

/** FormSG submissions are small; anything larger is not one of ours. */
const MAX_WEBHOOK_BYTES = 2 * 1024 * 1024;

export function createApp(deps: AppDependencies) {
  const app = new Hono<{ Variables: AdminVariables }>();
  const admin = requireAdmin(deps.adminTokens);

  app.get('/healthz', (c) => c.json({ ok: true }));

  const metrics = deps.metrics;
  if (metrics) {
    app.use('/sites', countWebhookAnswers(metrics));
    app.get('/metrics', admin, (c) =>
      c.body(metrics.render(), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE }),
    );
  }

  app.post(
    '/sites',
    bodyLimit({
      maxSize: MAX_WEBHOOK_BYTES,
      onError: (c) => c.json({ error: 'body_too_large', message: 'the body is too large' }, 413),
    }),
    async (c) => {
      const signature = c.req.header('x-formsg-signature');
      const raw = await c.req.text();
      const body = parseJson(raw);

      const admission = await deps.runner.admit({ signature, body });

      if (admission.outcome === 'rejected') {
        deps.logger.warn({ reason: admission.reason }, 'webhook rejected');

        return c.json({ error: admission.reason, message: admission.message }, 400);
      }
      if (admission.outcome === 'accepted') deps.driver.dispatch(admission.runId);

      return c.json({
        runId: admission.runId,
        submissionId: admission.submissionId,
        duplicate: admission.outcome === 'duplicate',
      });
    },
  );

  app.get('/runs', admin, async (c) => {
    const status = c.req.query('status');
    if (status !== undefined && !RUN_STATUSES.includes(status as RunStatus)) {
      const message = `status must be one of ${RUN_STATUSES.join(', ')}`;

      return c.json({ error: 'bad_status', message }, 400);
    }
    const limit = Number(c.req.query('limit') ?? 100);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
      return c.json({ error: 'bad_limit', message: 'limit must be a whole number, 1 to 500' }, 400);
    }
    const runs = await listRuns(deps.db, {
      ...(status ? { status: status as RunStatus } : {}),
      limit,
    });

    return c.json({
      runs: runs.map((run) => ({
        id: run.id,
        submissionId: run.submission_id,
        state: run.state,
        status: run.status,
        siteName: run.site_name,
        requesterEmail: run.requester_email,
        createdAt: run.created_at,
        finishedAt: run.finished_at,
      })),
    });
  });

  for (const action of ['retry', 'rollback', 'cancel'] as const) {
    app.post(`/runs/:id/${action}`, admin, async (c) => {
      const operator = c.get('operator');
      const outcome = await deps.runner.operate(c.req.param('id'), action, operator);
      if (outcome.ok) {
        deps.logger.info({ runId: outcome.runId, action, operator }, 'operator action accepted');

        return c.json({ runId: outcome.runId, action, accepted: true }, 202);
      }
      const status = outcome.reason === 'not_found' ? 404 : 409;

      return c.json({ error: outcome.reason, message: outcome.message }, status);
    });
  }

  app.get('/runs/:id', admin, async (c) => {
    const view = await loadRunView(deps.db, c.req.param('id'));
    if (!view) return c.json({ error: 'not_found', message: 'no run with that id' }, 404);

    return c.json(view);
  });

  app.route('/dashboard', createDashboard(deps));

  app.onError((error, c) => {
    deps.logger.error({ err: error, path: c.req.path }, 'request failed');

    return c.json({ error: 'internal', message: 'the request could not be handled' }, 500);
  });

  return app;
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}
