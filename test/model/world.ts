/**
 * Everything a replayed path runs against, started once per database kind and reset between
 * paths: one migrated database (PGlite, or PostgreSQL when configured), the GitHub and Amplify
 * emulators, an SMTP sink, and one service per configuration a path may need (with or without
 * a team and an operations address; with short or very long waits between attempts). The
 * services share the database, the emulators and the sink, and none resumes another's runs.
 *
 * Database faults are real database errors: triggers (and, for the users look-up, a view) call
 * `model_fault(step)`, which raises the SQLSTATE planned for that statement's n-th execution.
 * The count lives in a sequence, so the failing statement's rollback does not undo it. On
 * PostgreSQL a table lock taken from a connection of its own holds a step's write in flight.
 */
import { Writable } from 'node:stream';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Database } from '../../db/schema.js';
import type { DatabaseKind } from '../../db/database.js';
import { loadConfig } from '../../src/config.js';
import { generateFormKeyPair, generateObjectId } from '../../src/formsg/test-submission.js';
import { createLogger } from '../../src/logger.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { startService, type Service } from '../../src/service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { startMailSink, type MailSink } from './mail-sink.js';

export const ORG = 'site-platform';
export const TEAM = 'site-editors';
export const OPS_EMAIL = 'ops@example.gov.sg';
export const WEBHOOK_URL = 'https://sites.example.gov.sg/sites';
export const ADMIN_TOKEN = 'model-admin-token-0123456789';
/** The description of a repository someone else made under the requested name. */
export const FOREIGN_REPO = 'a site someone else made';

/** How long a replayed run may take before it counts as stuck. */
const SETTLE_MS = 15_000;

/** Every table a run writes to, children first. */
const TABLES = ['mails', 'run_events', 'runs', 'deployments', 'repos', 'sites', 'model_users'];

/** The database steps a fault can be planted in. */
export const DB_FAULT_STEPS = [
  'findUser',
  'createSite',
  'recordRepo',
  'recordDeployment',
  'markSiteReady',
  'markSiteFailed',
  'reopenSite',
] as const;
export type DbFaultStep = (typeof DB_FAULT_STEPS)[number];

/** Which service a path needs. */
export interface ServiceShape {
  team: boolean;
  ops: boolean;
  /**
   * Waits of up to an hour between attempts, so that a run can be cancelled while it waits.
   * The wait is drawn with full jitter: one in about 30,000 is shorter than 100 ms, and the
   * path then fails because the run went on before the cancel arrived.
   */
  slow: boolean;
}

/** One parsed log line, as the service wrote it. */
export type LogLine = Record<string, unknown>;

export interface World {
  kind: DatabaseKind;
  db: Kysely<Database>;
  sandbox: Sandbox;
  sink: MailSink;
  keys: { publicKey: string; secretKey: string };
  formId: string;
  /** Every secret the services hold; none may appear in what a run leaves behind. */
  secrets: string[];
  logs: LogLine[];
  rawLogs: string[];
  /** Called with every log line as it is written, inside the write. */
  onLog: ((line: LogLine) => void) | undefined;
  service(shape: ServiceShape): Promise<Service>;
  /** Plans the outcome of each execution of a database step: a SQLSTATE, or null to pass. */
  planDbFaults(plan: Partial<Record<DbFaultStep, Array<string | null>>>): Promise<void>;
  addUser(email: string): Promise<void>;
  removeUsers(): Promise<void>;
  /**
   * PostgreSQL only: locks `table` against writes from a connection of its own, so that a
   * step's INSERT or UPDATE waits; resolves with the function that lets it go.
   */
  lockTable(table: 'sites' | 'repos' | 'deployments'): Promise<() => Promise<void>>;
  /**
   * Waits until no run is being driven by any service. After `timeoutMs`, stops every
   * service (the next `service()` starts fresh ones) and throws, naming the runs still going.
   */
  settle(timeoutMs?: number): Promise<void>;
  /** Forgets every row, resource, fault, message and log line. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export async function startWorld(kind: DatabaseKind): Promise<World> {
  const database = await createTestDatabase(kind);
  await installFaultHooks(database);
  const sink = await startMailSink();
  const keys = generateFormKeyPair();
  const formId = generateObjectId();
  const sandbox = await startSandbox({ org: ORG, region: 'ap-southeast-1', team: TEAM });
  const services = new Map<string, Promise<Service>>();

  const world: World = {
    kind,
    db: database.db,
    sandbox,
    sink,
    keys,
    formId,
    secrets: [
      keys.secretKey,
      sandbox.githubToken,
      sandbox.awsCredentials.secretAccessKey,
      sandbox.awsCredentials.accessKeyId,
      ADMIN_TOKEN,
    ],
    logs: [],
    rawLogs: [],
    onLog: undefined,

    service(shape) {
      const key = `${shape.team}/${shape.ops}/${shape.slow}`;
      let started = services.get(key);
      if (!started) {
        started = startShapedService(world, shape);
        services.set(key, started);
      }

      return started;
    },

    async planDbFaults(plan) {
      const rows = DB_FAULT_STEPS.flatMap((step) =>
        (plan[step] ?? []).flatMap((sqlstate, index) =>
          sqlstate === null ? [] : [{ step, visit: index + 1, sqlstate }],
        ),
      );
      const restart = DB_FAULT_STEPS.map((step) => sql`setval(${sequenceOf(step)}, 1, false)`);
      await sql`delete from model_fault_plan`.execute(database.db);
      await sql`select ${sql.join(restart)}`.execute(database.db);
      if (rows.length === 0) return;
      const values = rows.map((row) => sql`(${row.step}, ${row.visit}, ${row.sqlstate})`);
      await sql`insert into model_fault_plan (step, visit, sqlstate)
        values ${sql.join(values)}`.execute(database.db);
    },

    async addUser(email) {
      await sql`insert into model_users (email) values (${email})`.execute(database.db);
    },

    async lockTable(table) {
      if (!database.url) throw new Error('table locks need PostgreSQL');
      const client = new pg.Client({ connectionString: database.url });
      await client.connect();
      await client.query('begin');
      // Writers need ROW EXCLUSIVE, which this refuses; readers and foreign-key checks pass.
      await client.query(`lock table ${table} in share row exclusive mode`);

      return async () => {
        await client.query('rollback').catch(() => undefined);
        await client.end();
      };
    },

    async removeUsers() {
      await sql`delete from model_users`.execute(database.db);
    },

    async settle(timeoutMs = SETTLE_MS) {
      const idle = async () => {
        for (;;) {
          const running = await Promise.all([...services.values()]);
          await Promise.all(running.map((service) => service.driver.idle()));
          if (running.every((service) => service.runner.activeRuns().length === 0)) return;
        }
      };
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), timeoutMs);
      });
      const outcome = await Promise.race([idle(), late]);
      clearTimeout(timer);
      if (outcome !== 'late') return;

      const running = await Promise.all([...services.values()]);
      const stuck = running.flatMap((service) => service.runner.activeRuns());
      services.clear();
      await Promise.allSettled(running.map((service) => service.close()));
      throw new Error(`runs still going after ${timeoutMs} ms, services restarted: ${stuck}`);
    },

    async reset() {
      // A run a failed path left going must not leak into the next one.
      await world.settle().catch(() => undefined);
      // DELETE, not TRUNCATE: on PostgreSQL a truncate of a few tiny tables costs far more.
      for (const table of TABLES) await sql`delete from ${sql.table(table)}`.execute(database.db);
      await world.planDbFaults({});
      sandbox.github.state.reset();
      sandbox.github.state.addTeam(ORG, TEAM);
      sandbox.amplify.state.reset();
      sandbox.github.faults.clear();
      sandbox.amplify.faults.clear();
      sandbox.github.requests.length = 0;
      sandbox.amplify.requests.length = 0;
      sink.reset();
      world.logs.length = 0;
      world.rawLogs.length = 0;
      world.onLog = undefined;
    },

    async close() {
      const running = await Promise.allSettled([...services.values()]);
      for (const result of running) {
        if (result.status === 'fulfilled') await result.value.close();
      }
      await sandbox.close();
      await sink.close();
      await database.close();
    },
  };

  return world;
}

/** The sequence counting a step's statements: unquoted names are folded to lower case. */
function sequenceOf(step: DbFaultStep): string {
  return `model_fault_${step.toLowerCase()}`;
}

async function startShapedService(world: World, shape: ServiceShape): Promise<Service> {
  const wait = shape.slow ? '3600000' : undefined;
  const config = loadConfig({
    FORMSG_MODE: 'test',
    FORMSG_SECRET_KEY: world.keys.secretKey,
    FORMSG_WEBHOOK_URL: WEBHOOK_URL,
    FORMSG_FORM_ID: world.formId,
    GITHUB_ORG: ORG,
    SMTP_URL: world.sink.url,
    MAIL_FROM: 'Site Platform <sites@example.gov.sg>',
    ADMIN_TOKEN: `model:${ADMIN_TOKEN}`,
    RETRY_BASE_DELAY_MS: wait ?? '5',
    RETRY_MAX_DELAY_MS: wait ?? '20',
    RETRY_MAX_ELAPSED_MS: '7200000',
    RETRY_MAX_ATTEMPTS: '4',
    STEP_TIMEOUT_MS: '5000',
    TEMPLATE_READY_TIMEOUT_MS: '3000',
    // The services share one database but not their run locks: none may sweep up another's runs.
    RESUME_INTERVAL_MS: '86400000',
    ...(shape.team ? { GITHUB_TEAM: TEAM } : {}),
    ...(shape.ops ? { OPS_EMAIL } : {}),
  });

  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (text.trim() === '') continue;
        const line = JSON.parse(text) as LogLine;
        world.rawLogs.push(text);
        world.logs.push(line);
        world.onLog?.(line);
      }
      done();
    },
  });
  const logger = createLogger({ level: 'debug', secrets: world.secrets, destination });

  return startService(config, {
    logger,
    listen: false,
    resume: false,
    sandbox: world.sandbox,
    database: { db: world.db, kind: world.kind },
    templatePollMs: 20,
  });
}

/**
 * The fault hooks: a plan table, one sequence per step counting its executions, the function
 * that raises, triggers on the written tables, and `users` turned into a view over the real
 * table so that the look-up can fail too.
 */
async function installFaultHooks(database: TestDatabase): Promise<void> {
  const { db } = database;
  await sql`create table model_fault_plan (
    step text not null,
    visit integer not null,
    sqlstate text not null,
    primary key (step, visit)
  )`.execute(db);
  for (const step of DB_FAULT_STEPS) {
    await sql`create sequence ${sql.id(sequenceOf(step))}`.execute(db);
  }

  await sql`create function model_fault(p_step text) returns boolean
    language plpgsql volatile as $$
    declare
      execution bigint := nextval('model_fault_' || lower(p_step));
      planned text;
    begin
      select sqlstate into planned from model_fault_plan
        where step = p_step and visit = execution;
      if planned is not null then
        raise exception 'model fault in %', p_step using errcode = planned;
      end if;
      return true;
    end $$`.execute(db);

  await sql`create function model_sites_fault() returns trigger language plpgsql as $$
    begin
      if tg_op = 'INSERT' then
        perform model_fault('createSite');
      elsif new.job_status = 'READY' then
        perform model_fault('markSiteReady');
      elsif new.job_status = 'FAILURE' then
        perform model_fault('markSiteFailed');
      elsif new.job_status = 'RUNNING' then
        perform model_fault('reopenSite');
      end if;
      return new;
    end $$`.execute(db);
  await sql`create trigger model_sites_fault before insert or update on sites
    for each row execute function model_sites_fault()`.execute(db);

  for (const [table, step] of [
    ['repos', 'recordRepo'],
    ['deployments', 'recordDeployment'],
  ] as const) {
    const fn = `model_${table}_fault`;
    await sql`create function ${sql.id(fn)}() returns trigger language plpgsql as ${sql.lit(
      `begin perform model_fault('${step}'); return new; end`,
    )}`.execute(db);
    await sql`create trigger ${sql.id(fn)} before insert or update on ${sql.id(table)}
      for each row execute function ${sql.id(fn)}()`.execute(db);
  }

  await sql`alter table users rename to model_users`.execute(db);
  // The sub-select makes the check a one-time filter: it runs once per query, rows or not.
  await sql`create view users as
    select * from model_users where (select model_fault('findUser'))`.execute(db);
}
