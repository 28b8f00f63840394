/**
 * The command line: `serve`, `demo`, `submit`, `migrate`, `export`, `users` and `runs`.
 * Settings come from the environment (see the README); this is the only module that reads it.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openDatabase } from '../db/database.js';
import { migrateToLatest } from '../db/migrate.js';
import { addUser, listUsers } from '../db/users.repository.js';
import { findSiteBySubmission } from '../db/sites.repository.js';
import { findRepoBySite } from '../db/repos.repository.js';
import { findDeploymentBySite } from '../db/deployments.repository.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import type { FieldTitles } from './formsg/fields.js';
import {
  buildTestSubmission,
  generateFormKeyPair,
  generateObjectId,
  publicKeyFromSecretKey,
} from './formsg/test-submission.js';
import type { RunView } from './runs/view.js';
import { startService } from './service.js';
import { DIAGRAM_START, replaceDiagram, toDefinitionJson, toMermaid } from './visualize.js';
import { siteCreationMachine } from '../machines/site-creation.machine.js';
import { createLogger } from './logger.js';

const USAGE = `usage: site-orchestrator <command>

  serve                      run the HTTP service (POST /sites, GET /runs/:id)
  demo                       create one site end to end on the embedded database and sandbox
  submit <answers.json>      sign, encrypt and post a submission to a running service
                             (FORMSG_MODE=test services only; --url to override the target)
  migrate                    bring the database schema up to date
  keys                       print a new form key pair, for local serve / submit
  export [dir]               write the machine's JSON definition and Mermaid diagram to dir
                             (default docs/) and the diagram into ./README.md
  users add <email>          register a requester
  users list                 list registered requesters
  runs list [--status S]     list runs, newest first        (these talk to the running
  runs show <id>             state, resources, history       service's admin API at
  runs retry <id>            resume a failed run             SERVICE_URL, default
  runs rollback <id>         undo a failed or stuck run      http://127.0.0.1:$PORT,
  runs cancel <id>           stop a running run, undo it     with ADMIN_TOKEN)
`;

// The AWS SDK warns that its releases from January 2027 need Node 22; package.json pins a
// release that supports Node 20, so the warning says nothing actionable here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;

  switch (command) {
    case 'serve':
      return serve();
    case 'demo':
      return demo();
    case 'submit':
      return submit(rest);
    case 'migrate':
      return migrate();
    case 'keys':
      return keys();
    case 'users':
      return users(rest);
    case 'runs':
      return runs(rest);
    case 'export':
      return exportMachine(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);

      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);

      return 2;
  }
}

async function serve(): Promise<number> {
  const config = loadConfig(process.env);
  const service = await startService(config);

  await new Promise<void>((done) => {
    const stop = () => done();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  service.logger.info('shutting down; unfinished runs resume at the next start');
  await service.close();

  return 0;
}

type OpenDb = Awaited<ReturnType<typeof openDatabase>>['db'];

async function withDatabase<T>(work: (config: Config, db: OpenDb) => Promise<T>): Promise<T> {
  const config = loadConfig(process.env);
  const database = await openDatabase({
    ...(config.database.url ? { databaseUrl: config.database.url } : {}),
    pgliteDir: config.database.pgliteDir,
  });
  try {
    await migrateToLatest(database.db);

    return await work(config, database.db);
  } finally {
    await database.close();
  }
}

/**
 * The machine's pictures: `machine.json` (for the XState visualiser and the Stately editor)
 * and `machine.mmd` in `dir`, and the diagram between the markers of `README.md` in the
 * current folder, when there is one with markers. Needs no settings.
 */
async function exportMachine(args: string[]): Promise<number> {
  const dir = resolve(args[0] ?? 'docs');
  const mermaid = toMermaid(siteCreationMachine);

  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'machine.json'), toDefinitionJson(siteCreationMachine));
  await writeFile(join(dir, 'machine.mmd'), mermaid);
  process.stdout.write(`wrote ${join(dir, 'machine.json')} and ${join(dir, 'machine.mmd')}\n`);

  const readmePath = resolve('README.md');
  const readme = await readFile(readmePath, 'utf8').catch(() => undefined);
  if (readme === undefined || !readme.includes(DIAGRAM_START)) {
    process.stdout.write('no README.md with diagram markers here; left alone\n');

    return 0;
  }
  await writeFile(readmePath, replaceDiagram(readme, mermaid));
  process.stdout.write(`wrote the diagram into ${readmePath}\n`);

  return 0;
}

/** A form key pair like the one FormSG makes for a storage-mode form, for local trials. */
function keys(): number {
  const pair = generateFormKeyPair();
  process.stdout.write(`FORMSG_SECRET_KEY=${pair.secretKey}\n`);
  process.stdout.write(`# public key (FormSG encrypts answers to it): ${pair.publicKey}\n`);

  return 0;
}

async function migrate(): Promise<number> {
  await withDatabase(async () => undefined);
  process.stdout.write('database schema is up to date\n');

  return 0;
}

async function users(args: string[]): Promise<number> {
  const [action, email] = args;
  if (action === 'add' && email) {
    const user = await withDatabase((_, db) => addUser(db, email));
    process.stdout.write(`user ${user.id}: ${user.email}\n`);

    return 0;
  }
  if (action === 'list') {
    const rows = await withDatabase((_, db) => listUsers(db));
    for (const user of rows) process.stdout.write(`${user.id}\t${user.email}\n`);

    return 0;
  }
  process.stderr.write('usage: users add <email> | users list\n');

  return 2;
}

/**
 * Operator commands go through the running service's admin API, so the one process that drives
 * runs also carries out retries, rollbacks and cancellations.
 */
async function runs(args: string[]): Promise<number> {
  const [action, ...rest] = args;
  const config = loadConfig(process.env);
  const base = process.env.SERVICE_URL ?? `http://127.0.0.1:${config.port}`;
  const token = config.adminTokens[0]?.token;
  if (!token) {
    throw new ConfigError('invalid settings:\n  ADMIN_TOKEN: needed to reach the admin API');
  }
  const call = async (method: string, path: string) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
    });
    const body = (await response.json()) as Record<string, unknown>;

    return { ok: response.ok, status: response.status, body };
  };

  if (action === 'list') {
    const statusIndex = rest.indexOf('--status');
    const status = statusIndex >= 0 ? rest[statusIndex + 1] : undefined;
    const query = status ? `?status=${encodeURIComponent(status)}` : '';
    const answer = await call('GET', `/runs${query}`);
    if (!answer.ok) return report(answer);
    const list = answer.body.runs as Array<Record<string, unknown>>;
    for (const run of list) {
      const line = [run.id, run.status, run.state, run.siteName ?? '-', run.submissionId];
      process.stdout.write(`${line.join('\t')}\n`);
    }

    return 0;
  }

  const id = rest[0];
  if (action === 'show' && id) return report(await call('GET', `/runs/${encodeURIComponent(id)}`));
  if ((action === 'retry' || action === 'rollback' || action === 'cancel') && id) {
    return report(await call('POST', `/runs/${encodeURIComponent(id)}/${action}`));
  }

  process.stderr.write(
    'usage: runs list [--status S] | runs show <id> | runs retry|rollback|cancel <id>\n',
  );

  return 2;
}

function report(answer: { ok: boolean; status: number; body: unknown }): number {
  const stream = answer.ok ? process.stdout : process.stderr;
  stream.write(`${JSON.stringify(answer.body, null, 2)}\n`);

  return answer.ok ? 0 : 1;
}

/** Reads `{ "Government E-mail": "...", ... }` (titles) or `{ email, agency, ... }` (keys). */
type Answers = Partial<Record<keyof FieldTitles, string>>;

function answersFrom(json: unknown, titles: FieldTitles): Answers {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new Error('the answers file must hold a JSON object');
  }
  const source = json as Record<string, unknown>;
  const answers: Answers = {};
  for (const key of Object.keys(titles) as Array<keyof FieldTitles>) {
    const value = source[key] ?? source[titles[key]];
    if (typeof value === 'string') answers[key] = value;
  }

  return answers;
}

async function submit(args: string[]): Promise<number> {
  const file = args.find((arg) => !arg.startsWith('--'));
  const urlIndex = args.indexOf('--url');
  if (!file) {
    process.stderr.write('usage: submit <answers.json> [--url http://host:port/sites]\n');

    return 2;
  }

  const config = loadConfig(process.env);
  if (!config.formsg.secretKey) {
    throw new ConfigError('invalid settings:\n  FORMSG_SECRET_KEY: needed to encrypt the answers');
  }
  const target = (urlIndex >= 0 ? args[urlIndex + 1] : undefined) ?? config.formsg.webhookUrl;
  const answers = answersFrom(JSON.parse(await readFile(file, 'utf8')), config.formsg.fields);
  const submission = buildTestSubmission({
    answers,
    titles: config.formsg.fields,
    formPublicKey: publicKeyFromSecretKey(config.formsg.secretKey),
    webhookUrl: config.formsg.webhookUrl,
    formId: config.formsg.formId ?? generateObjectId(),
  });

  const response = await fetch(target, {
    method: 'POST',
    headers: submission.headers,
    body: JSON.stringify(submission.body),
  });
  process.stdout.write(`${response.status} ${await response.text()}\n`);

  return response.ok ? 0 : 1;
}

/**
 * One site end to end on the embedded defaults: PGlite, the sandbox, and the outbox. It builds a
 * real FormSG delivery (encrypted to a fresh form key, signed as FormSG signs in test mode),
 * posts it over HTTP, and follows the run through the admin API.
 */
async function demo(): Promise<number> {
  const port = await freePort();
  const keys = generateFormKeyPair();
  const adminToken = randomBytes(24).toString('hex');
  const formId = generateObjectId();
  const dataDir = process.env.DEMO_DATA_DIR ?? '.data/demo';
  const env: Record<string, string | undefined> = {
    ...process.env,
    PORT: String(port),
    FORMSG_MODE: 'test',
    FORMSG_SECRET_KEY: keys.secretKey,
    FORMSG_WEBHOOK_URL: `http://127.0.0.1:${port}/sites`,
    FORMSG_FORM_ID: formId,
    GITHUB_TOKEN: undefined,
    GITHUB_TEAM: process.env.GITHUB_TEAM ?? 'site-editors',
    PGLITE_DIR: process.env.PGLITE_DIR ?? join(dataDir, 'pglite'),
    MAIL_OUTBOX_DIR: process.env.MAIL_OUTBOX_DIR ?? join(dataDir, 'outbox'),
    SMTP_URL: undefined,
    ADMIN_TOKEN: `demo:${adminToken}`,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
  };
  const config = loadConfig(env);
  const logger = createLogger({ level: config.logLevel, secrets: [keys.secretKey, adminToken] });
  const service = await startService(config, { logger });
  const print = (line: string) => process.stdout.write(`${line}\n`);

  try {
    const email = 'officer@agency.gov.sg';
    await addUser(service.db, email);
    print(`demo user: ${email}`);

    const suffix = randomBytes(3).toString('hex');
    const submission = buildTestSubmission({
      answers: {
        email,
        agency: 'Demo Agency',
        repoName: `demo-site-${suffix}`,
        siteName: `Demo Site ${suffix}`,
        pointOfContact: 'Demo Officer',
      },
      titles: config.formsg.fields,
      formPublicKey: keys.publicKey,
      webhookUrl: config.formsg.webhookUrl,
      formId,
    });

    const response = await fetch(config.formsg.webhookUrl, {
      method: 'POST',
      headers: submission.headers,
      body: JSON.stringify(submission.body),
    });
    const answer = (await response.json()) as { runId?: string; error?: string };
    print(`POST /sites -> ${response.status} ${JSON.stringify(answer)}`);
    if (!response.ok || !answer.runId) return 1;

    const view = await follow(`${service.url}/runs/${answer.runId}`, adminToken, print);
    const site = await findSiteBySubmission(service.db, submission.submissionId);
    const siteId = site ? Number(site.id) : null;
    const repo = siteId === null ? undefined : await findRepoBySite(service.db, siteId);
    const deployment = siteId === null ? undefined : await findDeploymentBySite(service.db, siteId);
    const mail = await findOutboxFile(config.mail.outboxDir, answer.runId);

    print('');
    print(`run:        ${view.id} (${view.status}, ${view.state})`);
    print(`site:       ${JSON.stringify(site ?? null)}`);
    print(`repo:       ${JSON.stringify(repo ?? null)}`);
    print(`deployment: ${JSON.stringify(deployment ?? null)}`);
    print(`e-mail:     ${mail ?? '(none found)'}`);

    const ready = site?.site_status === 'LAUNCH' && site.job_status === 'READY';
    print(ready ? 'the site is LAUNCH / READY' : 'the site did not reach LAUNCH / READY');

    return ready ? 0 : 1;
  } finally {
    await service.close();
  }
}

/** Polls the admin API, printing each state the run enters, until the run is final. */
async function follow(
  url: string,
  token: string,
  print: (line: string) => void,
): Promise<RunView> {
  let seen = 0;
  const deadline = Date.now() + 120_000;

  for (;;) {
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    const view = (await response.json()) as RunView;
    for (const event of view.history.slice(seen)) {
      if (event.type === 'state.entered' || event.type === 'run.accepted') {
        print(`  -> ${event.state}`);
      } else if (event.type === 'step.retrying' || event.type === 'step.failed') {
        const error = event.error as { name?: string; message?: string } | null;
        print(`     ${event.type} ${event.step}: ${error?.name ?? ''} ${error?.message ?? ''}`);
      }
    }
    seen = view.history.length;
    if (view.status !== 'running') return view;
    if (Date.now() > deadline) throw new Error('the run did not finish within two minutes');
    await new Promise((done) => setTimeout(done, 100));
  }
}

async function findOutboxFile(dir: string, runId: string): Promise<string | undefined> {
  const files = await readdir(dir).catch(() => [] as string[]);
  const match = files.filter((file) => file.includes(runId)).sort().pop();

  return match ? resolve(dir, match) : undefined;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 2;

      return;
    }
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
