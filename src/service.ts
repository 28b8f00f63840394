/**
 * Assembles the service from its settings: database, sandbox (when no GitHub token is set),
 * clients, mailer, steps, runner, driver and HTTP server. `serve`, `demo` and the end-to-end
 * tests all start the service through here, so they exercise the same wiring as production.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve as serveNode } from '@hono/node-server';
import type { Kysely } from 'kysely';
import { openDatabase } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import type { Database } from '../db/schema.js';
import { siteCreationMachine } from '../machines/site-creation.machine.js';
import { createAmplifyClient } from './amplify.js';
import { ConfigError, secretValues, type Config } from './config.js';
import { createWebhookAuthenticator } from './formsg/webhook.js';
import { createGithubClient } from './github.js';
import { startLiveInspector, type LiveInspector } from './inspect.js';
import { createApp } from './http/app.js';
import { createLogger, type Logger } from './logger.js';
import { createMailer, type Mailer } from './mail/mailer.js';
import { createMetrics, type Metrics } from './metrics.js';
import { InProcessDriver, type RunDriver } from './runs/driver.js';
import { Runner } from './runs/runner.js';
import { AdvisoryRunLocks, LocalRunLocks } from './runs/locks.js';
import { PgBossDriver } from './runs/pgboss-driver.js';
import { startSandbox, type Sandbox } from './sandbox/index.js';
import { createSteps } from './steps/index.js';

export interface ServiceOptions {
  /** A logger to use instead of one built from the settings. */
  logger?: Logger;
  /** Serve HTTP (default true). */
  listen?: boolean;
  /** Resume unfinished runs at start (default true). */
  resume?: boolean;
  /** A sandbox started by the caller, for tests that inject faults. */
  sandbox?: Sandbox;
  /** An open database to use instead of opening one from the settings; the caller closes it. */
  database?: { db: Kysely<Database>; kind: 'pglite' | 'postgres' };
  /** How often a step polls a template repository; tests shorten it. */
  templatePollMs?: number;
}

export interface Service {
  config: Config;
  db: Kysely<Database>;
  logger: Logger;
  runner: Runner;
  driver: RunDriver;
  app: ReturnType<typeof createApp>;
  mailer: Mailer;
  /** The registry `GET /metrics` serves. */
  metrics: Metrics;
  /** Streams inspection events to `INSPECT_WS_URL`, when it is set. */
  inspector: LiveInspector | undefined;
  /** The in-process sandbox, when the service runs against it. */
  sandbox: Sandbox | undefined;
  /** `http://host:port`, when listening. */
  url: string | undefined;
  close(): Promise<void>;
}

export async function startService(
  config: Config,
  options: ServiceOptions = {},
): Promise<Service> {
  if (!config.formsg.secretKey) {
    throw new ConfigError(
      'invalid settings:\n  FORMSG_SECRET_KEY: the form secret key is required',
    );
  }

  // What has been started so far, stopped in reverse order on close or when start-up fails.
  const teardown: Array<() => unknown> = [];
  const tearDown = async () => {
    for (const stop of teardown.splice(0).reverse()) {
      await Promise.resolve()
        .then(stop)
        .catch(() => undefined);
    }
  };

  try {
    let sandbox = options.sandbox;
    const ownsSandbox = !sandbox && !config.github.token;
    if (ownsSandbox && !config.github.allowSandbox) {
      throw new ConfigError(
        'invalid settings:\n  GITHUB_TOKEN: required with FORMSG_MODE=production; set ' +
          'ALLOW_SANDBOX=true to run against the built-in GitHub and Amplify emulators',
      );
    }
    if (ownsSandbox) {
      const started = await startSandbox({
        org: config.github.org,
        region: config.amplify.region,
        ...(config.github.team ? { team: config.github.team } : {}),
        ...(config.github.template ? { template: config.github.template } : {}),
      });
      teardown.push(() => started.close());
      sandbox = started;
    }

    // With a sandbox, both clients talk to it; otherwise to the configured services.
    const githubToken = sandbox ? sandbox.githubToken : (config.github.token as string);
    const githubUrl = sandbox ? sandbox.github.url : config.github.apiUrl;
    const amplifyEndpoint = sandbox ? sandbox.amplify.url : config.amplify.endpoint;
    const awsCredentials = sandbox ? sandbox.awsCredentials : config.amplify.credentials;

    const secrets = [
      ...secretValues(config),
      githubToken,
      ...(awsCredentials ? [awsCredentials.secretAccessKey] : []),
    ];
    const logger = options.logger ?? createLogger({ level: config.logLevel, secrets });
    if (ownsSandbox && sandbox) {
      logger.warn(
        { github: sandbox.github.url, amplify: sandbox.amplify.url },
        'no GITHUB_TOKEN set: using the in-process sandbox emulators for GitHub and Amplify',
      );
    }

    const database = options.database
      ? { ...options.database, close: async () => undefined }
      : await openDatabase({
          ...(config.database.url ? { databaseUrl: config.database.url } : {}),
          pgliteDir: config.database.pgliteDir,
        });
    teardown.push(() => database.close());
    await migrateToLatest(database.db);
    logger.info({ database: database.kind }, 'database ready');

    const github = createGithubClient({
      token: githubToken,
      baseUrl: githubUrl,
      org: config.github.org,
      ...(config.github.template ? { template: config.github.template } : {}),
      timeoutMs: config.stepTimeoutMs,
    });
    const amplify = createAmplifyClient({
      region: config.amplify.region,
      ...(amplifyEndpoint ? { endpoint: amplifyEndpoint } : {}),
      ...(awsCredentials ? { credentials: awsCredentials } : {}),
      timeoutMs: config.stepTimeoutMs,
    });
    const mailer = createMailer({
      ...(config.mail.smtpUrl ? { smtpUrl: config.mail.smtpUrl } : {}),
      outboxDir: config.mail.outboxDir,
      from: config.mail.from,
    });
    teardown.push(() => mailer.close());

    const authenticate = createWebhookAuthenticator({
      mode: config.formsg.mode,
      secretKey: config.formsg.secretKey,
      webhookUrl: config.formsg.webhookUrl,
      ...(config.formsg.formId ? { formId: config.formsg.formId } : {}),
    });

    const steps = createSteps({
      db: database.db,
      github,
      amplify,
      mailer,
      logger,
      authenticate,
      fieldTitles: config.formsg.fields,
      githubAccessToken: githubToken,
      ...(config.amplify.buildSpec ? { buildSpec: config.amplify.buildSpec } : {}),
      environmentVariables: config.amplify.environmentVariables,
      templateReadyTimeoutMs: config.templateReadyTimeoutMs,
      ...(options.templatePollMs !== undefined ? { templatePollMs: options.templatePollMs } : {}),
      ...(config.mail.supportEmail ? { supportEmail: config.mail.supportEmail } : {}),
    });
    const machine = siteCreationMachine.provide({ actors: steps });

    const metrics = createMetrics();
    const inspector = config.inspect.wsUrl
      ? startLiveInspector({ url: config.inspect.wsUrl, secrets, logger })
      : undefined;
    if (inspector) {
      teardown.push(() => inspector.stop());
      logger.info({ url: config.inspect.wsUrl }, 'live inspection enabled');
    }

    const locks = database.kind === 'postgres' && config.database.url
      ? new AdvisoryRunLocks(config.database.url, (runIds, error) => {
          logger.error({ err: error, runIds }, 'lost the run locks; suspending those runs');
          runner.suspend(runIds);
        })
      : new LocalRunLocks();
    const runner: Runner = new Runner({
      db: database.db,
      locks,
      machine,
      logger,
      policy: config.retry,
      stepTimeoutMs: config.stepTimeoutMs,
      ...(config.github.team ? { team: config.github.team } : {}),
      ...(config.mail.opsEmail ? { opsEmail: config.mail.opsEmail } : {}),
      observer: metrics.observeRun,
      ...(inspector ? { inspect: inspector.inspect } : {}),
    });
    const driver: RunDriver =
      config.driver.kind === 'pgboss' && config.database.url
        ? await PgBossDriver.start({
            runner,
            db: database.db,
            logger,
            databaseUrl: config.database.url,
            concurrency: config.driver.concurrency,
            sweepIntervalMs: config.resumeIntervalMs,
          })
        : new InProcessDriver(runner, database.db, logger, config.resumeIntervalMs);
    teardown.push(() => driver.close());
    const app = createApp({
      db: database.db,
      runner,
      driver,
      logger,
      adminTokens: config.adminTokens,
      metrics,
    });

    let url: string | undefined;
    if (options.listen !== false) {
      const server = await listen(app.fetch, config.host, config.port);
      teardown.push(() => closeServer(server));
      const address = server.address() as AddressInfo;
      url = `http://${config.host}:${address.port}`;
      logger.info({ url, webhookUrl: config.formsg.webhookUrl }, 'listening');
    }

    if (options.resume !== false) await driver.resumeUnfinished();

    return {
      config,
      db: database.db,
      logger,
      runner,
      driver,
      app,
      mailer,
      metrics,
      inspector,
      sandbox,
      url,
      close: tearDown,
    };
  } catch (error) {
    await tearDown();
    throw error;
  }
}

function listen(
  fetch: (request: Request) => Response | Promise<Response>,
  hostname: string,
  port: number,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = serveNode({ fetch, hostname, port }) as Server;
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
