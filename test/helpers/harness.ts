/**
 * A whole service for a test: a fresh database (PGlite, or PostgreSQL when asked), the sandbox
 * emulators, a real SMTP sink, and a form key pair. Submissions are built exactly as FormSG
 * builds them and posted through the Hono app.
 */
import type { Kysely, Selectable } from 'kysely';
import type { Database } from '../../db/schema.js';
import { addUser } from '../../db/users.repository.js';
import { loadConfig, type Config } from '../../src/config.js';
import type { FieldTitles } from '../../src/formsg/fields.js';
import {
  buildTestSubmission,
  generateFormKeyPair,
  generateObjectId,
  type TestSubmission,
} from '../../src/formsg/test-submission.js';
import { createLogger, type Logger } from '../../src/logger.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { startService, type Service } from '../../src/service.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startSmtpSink, type SmtpSink } from './smtp-sink.js';
import { Writable } from 'node:stream';

export const WEBHOOK_URL = 'https://sites.example.gov.sg/sites';
export const ORG = 'site-platform';
export const TEAM = 'site-editors';
export const REQUESTER = 'Officer@Agency.gov.sg';

export interface HarnessOptions {
  env?: Record<string, string>;
  template?: string;
  templateReadyDelayMs?: number;
  /** Also set DATABASE_URL (PostgreSQL only), so instances coordinate through advisory locks. */
  shareDatabaseUrl?: boolean;
}

export interface Harness {
  config: Config;
  service: Service;
  db: Kysely<Database>;
  database: TestDatabase;
  sandbox: Sandbox;
  sink: SmtpSink;
  keys: { publicKey: string; secretKey: string };
  formId: string;
  /** Every log line the service wrote, as parsed JSON. */
  logs: Array<Record<string, unknown>>;
  rawLogs: string[];
  addUser(email?: string): Promise<void>;
  build(answers?: Partial<Record<keyof FieldTitles, string>>, overrides?: Partial<BuildOptions>): TestSubmission;
  post(submission: TestSubmission | { headers: Record<string, string>; body: unknown }): Promise<Response>;
  /** Posts a submission and waits until every run it started is final. */
  submit(answers?: Partial<Record<keyof FieldTitles, string>>): Promise<{ response: Response; body: Record<string, unknown>; submission: TestSubmission }>;
  settle(): Promise<void>;
  /** Every row of the tables a run writes. */
  rows(): Promise<Rows>;
  /** Resolves once the run's saved state starts with `prefix`. */
  waitForState(runId: string, prefix: string): Promise<void>;
  close(): Promise<void>;
}

export interface Rows {
  sites: Selectable<Database['sites']>[];
  repos: Selectable<Database['repos']>[];
  deployments: Selectable<Database['deployments']>[];
  runs: Selectable<Database['runs']>[];
}

interface BuildOptions {
  formPublicKey: string;
  webhookUrl: string;
  formId: string;
  submissionId: string;
  epoch: number;
}

let counter = 0;

export function defaultAnswers(): Record<keyof FieldTitles, string> {
  counter += 1;
  const suffix = `${process.pid}-${counter}`;

  return {
    email: REQUESTER,
    agency: 'Ministry of Examples',
    repoName: `example-site-${suffix}`,
    siteName: `Example Site ${suffix}`,
    pointOfContact: 'Jane Tan',
  };
}

export async function startHarness(
  kind: 'pglite' | 'postgres',
  options: HarnessOptions = {},
): Promise<Harness> {
  const database = await createTestDatabase(kind);
  const sink = await startSmtpSink();
  const keys = generateFormKeyPair();
  const formId = generateObjectId();
  const env: Record<string, string> = {
    FORMSG_MODE: 'test',
    FORMSG_SECRET_KEY: keys.secretKey,
    FORMSG_WEBHOOK_URL: WEBHOOK_URL,
    FORMSG_FORM_ID: formId,
    GITHUB_ORG: ORG,
    GITHUB_TEAM: TEAM,
    SMTP_URL: sink.url,
    MAIL_FROM: 'Site Platform <sites@example.gov.sg>',
    OPS_EMAIL: 'ops@example.gov.sg',
    ADMIN_TOKEN: 'tester:test-admin-token-0123456789',
    RETRY_BASE_DELAY_MS: '5',
    RETRY_MAX_DELAY_MS: '20',
    RETRY_MAX_ATTEMPTS: '4',
    STEP_TIMEOUT_MS: '5000',
    TEMPLATE_READY_TIMEOUT_MS: '3000',
    LOG_LEVEL: 'debug',
    ...(options.template ? { GITHUB_TEMPLATE: options.template } : {}),
    ...(options.shareDatabaseUrl && database.url ? { DATABASE_URL: database.url } : {}),
    ...options.env,
  };
  const config = loadConfig(env);
  const sandbox = await startSandbox({
    org: ORG,
    region: config.amplify.region,
    team: TEAM,
    ...(options.template ? { template: options.template } : {}),
    ...(options.templateReadyDelayMs !== undefined
      ? { templateReadyDelayMs: options.templateReadyDelayMs }
      : {}),
  });

  const rawLogs: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        rawLogs.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  const logger: Logger = createLogger({
    level: 'debug',
    secrets: [keys.secretKey, sandbox.githubToken, sandbox.awsCredentials.secretAccessKey],
    destination,
  });

  const service = await startService(config, {
    logger,
    listen: false,
    sandbox,
    database: { db: database.db, kind: database.kind },
    templatePollMs: 20,
  });

  const build: Harness['build'] = (answers, overrides = {}) =>
    buildTestSubmission({
      answers: { ...defaultAnswers(), ...answers },
      titles: config.formsg.fields,
      formPublicKey: overrides.formPublicKey ?? keys.publicKey,
      webhookUrl: overrides.webhookUrl ?? WEBHOOK_URL,
      formId: overrides.formId ?? formId,
      ...(overrides.submissionId ? { submissionId: overrides.submissionId } : {}),
      ...(overrides.epoch ? { epoch: overrides.epoch } : {}),
    });

  const post: Harness['post'] = (submission) =>
    Promise.resolve(
      service.app.request('/sites', {
        method: 'POST',
        headers: submission.headers,
        body: JSON.stringify(submission.body),
      }),
    );

  return {
    config,
    service,
    db: database.db,
    database,
    sandbox,
    sink,
    keys,
    formId,
    logs,
    rawLogs,
    async addUser(email = REQUESTER) {
      await addUser(database.db, email);
    },
    build,
    post,
    async submit(answers) {
      const submission = build(answers);
      const response = await post(submission);
      const body = (await response.json()) as Record<string, unknown>;
      await service.driver.idle();

      return { response, body, submission };
    },
    settle: () => service.driver.idle(),
    async rows() {
      const db = database.db;

      return {
        sites: await db.selectFrom('sites').selectAll().execute(),
        repos: await db.selectFrom('repos').selectAll().execute(),
        deployments: await db.selectFrom('deployments').selectAll().execute(),
        runs: await db.selectFrom('runs').selectAll().execute(),
      };
    },
    async waitForState(runId, prefix) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const run = await database.db
          .selectFrom('runs')
          .select('state')
          .where('id', '=', runId)
          .executeTakeFirst();
        if (run?.state.startsWith(prefix)) return;
        if (Date.now() > deadline) {
          throw new Error(`run never reached ${prefix}; last ${run?.state ?? 'unknown'}`);
        }
        await new Promise((done) => setTimeout(done, 20));
      }
    },
    async close() {
      await service.close();
      await sandbox.close();
      await sink.close();
      await database.close();
    },
  };
}
