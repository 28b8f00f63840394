/**
 * The command line as an operator uses it: real child processes, a PGlite folder on disk, the
 * in-process sandbox, and the outbox.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateFormKeyPair } from '../src/formsg/test-submission.js';

const ROOT = join(import.meta.dirname, '..');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

describe('command line', () => {
  let dir: string;
  let server: ChildProcess | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'site-cli-'));
  });

  afterEach(async () => {
    server?.kill('SIGTERM');
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the demo end to end and exits 0 with the site LAUNCH / READY', async () => {
    const result = await cli(['demo'], { DEMO_DATA_DIR: dir });

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('POST /sites -> 200');
    expect(result.stdout).toContain('-> creatingRepo.creatingRepository.running');
    expect(result.stdout).toContain('-> done');
    expect(result.stdout).toContain('the site is LAUNCH / READY');
    const outbox = await readdir(join(dir, 'outbox'));
    expect(outbox.filter((file) => file.endsWith('.eml'))).toHaveLength(1);
  });

  it('stops with exit code 2 and names the variable when a setting is bad', async () => {
    const result = await cli(['migrate'], { PGLITE_DIR: join(dir, 'db'), PORT: 'eighty' });

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('PORT');
  });

  it('refuses to serve production traffic against the built-in emulators', async () => {
    const result = await cli(['serve'], {
      PGLITE_DIR: join(dir, 'db'),
      FORMSG_SECRET_KEY: generateFormKeyPair().secretKey,
    });

    expect(result.code).toBe(2);
    expect(result.stderr).toContain('GITHUB_TOKEN');
    expect(result.stderr).toContain('ALLOW_SANDBOX');
  });

  it('exits, rather than hanging, when the service cannot start', async () => {
    const blocker = createServer();
    await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
    const address = blocker.address();
    const port = typeof address === 'object' && address ? address.port : 0;

    const result = await cli(['serve'], {
      PGLITE_DIR: join(dir, 'db'),
      PORT: String(port),
      FORMSG_MODE: 'test',
      FORMSG_SECRET_KEY: generateFormKeyPair().secretKey,
    });
    blocker.close();

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('EADDRINUSE');
  });

  it('registers users, serves, accepts a submitted form and reports the run', async () => {
    const keys = generateFormKeyPair();
    const port = await freePort();
    const env = {
      PGLITE_DIR: join(dir, 'db'),
      MAIL_OUTBOX_DIR: join(dir, 'outbox'),
      PORT: String(port),
      FORMSG_MODE: 'test',
      FORMSG_SECRET_KEY: keys.secretKey,
      ADMIN_TOKEN: 'cli:cli-admin-token-0123456789',
      LOG_LEVEL: 'warn',
    };
    const added = await cli(['users', 'add', 'Someone@Agency.gov.sg'], env);
    const listed = await cli(['users', 'list'], env);
    expect(added.code).toBe(0);
    expect(listed.stdout).toContain('Someone@Agency.gov.sg');

    server = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    await waitForHealth(`http://127.0.0.1:${port}/healthz`);
    const answers = join(dir, 'answers.json');
    await writeFile(
      answers,
      JSON.stringify({
        'Government E-mail': 'someone@agency.gov.sg',
        Agency: 'Agency',
        'Repository Name': 'cli-site',
        'Site Name': 'CLI Site',
        'Point of Contact': 'Someone',
      }),
    );

    const submitted = await cli(['submit', answers], env);
    const { runId } = JSON.parse(submitted.stdout.replace(/^\d+ /, '')) as { runId: string };
    await waitForRun(`http://127.0.0.1:${port}/runs/${runId}`, env.ADMIN_TOKEN.split(':')[1] ?? '');
    const shown = JSON.parse((await cli(['runs', 'show', runId], env)).stdout) as Record<string, unknown>;

    expect(submitted.code).toBe(0);
    expect(shown).toMatchObject({ status: 'succeeded', state: 'done' });
    expect(shown.site).toMatchObject({ siteStatus: 'LAUNCH', jobStatus: 'READY' });
    const listedRuns = await cli(['runs', 'list', '--status', 'succeeded'], env);
    expect(listedRuns.stdout).toContain(runId);
    const outbox = await readdir(join(dir, 'outbox'));
    const mail = await readFile(join(dir, 'outbox', outbox[0] ?? ''), 'utf8');
    expect(mail).toContain('cli-site');
  });
});

async function waitForHealth(url: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error('the service did not start');
    await new Promise((done) => setTimeout(done, 100));
  }
}

async function waitForRun(url: string, token: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    const view = (await response.json()) as { status: string; state: string };
    if (view.status !== 'running') return;
    if (Date.now() > deadline) throw new Error(`run still ${view.state}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}
