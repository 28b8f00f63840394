/**
 * The service as a child process, the way it runs in production: `node --import tsx src/cli.ts
 * serve`, configured only through its environment. Tests kill it with SIGKILL wherever they
 * like and start it again on the same database; the emulators, the SMTP sink and the database
 * live outside it, so they survive its death.
 *
 * The child logs JSON lines on stdout; they are parsed and kept, and tests can wait for one.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestSubmission } from '../../src/formsg/test-submission.js';

/** The repository root, where `src/cli.ts` lives. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Variables of the test process a Node child needs to run at all; nothing else is passed. */
const INHERITED = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ'];

export type LogLine = Record<string, unknown>;

export interface ChildServiceOptions {
  /** The service's settings. `PORT` defaults to 0: the OS picks a free port. */
  env: Record<string, string>;
  /** Admin token (the secret part of `ADMIN_TOKEN`), for `admin()`. */
  adminToken?: string;
  /** How long the child may take to listen. */
  startTimeoutMs?: number;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildService {
  pid: number;
  /** `http://127.0.0.1:<port>`, read from the child's "listening" log line. */
  url: string;
  /** Every JSON line the child wrote on stdout, parsed, in order. */
  logs: LogLine[];
  /** Whatever the child wrote on stderr. */
  stderr(): string;
  /** Resolves with the first log line (already written or still to come) that matches. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Posts a webhook delivery to `POST /sites`. */
  post(submission: Pick<TestSubmission, 'headers' | 'body'>): Promise<Response>;
  /** Calls the admin API with the bearer token. */
  admin<T = Record<string, unknown>>(
    method: string,
    path: string,
  ): Promise<{ status: number; body: T }>;
  /** Sends `signal` (SIGKILL by default) and resolves once the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<ChildExit>;
  /** Resolves when the process ends, however it ends. */
  exited: Promise<ChildExit>;
}

/** Starts the child and resolves once it listens; rejects (and kills it) when it cannot. */
export async function startChildService(options: ChildServiceOptions): Promise<ChildService> {
  const env: Record<string, string> = { PORT: '0', HOST: '127.0.0.1', ...options.env };
  for (const name of INHERITED) {
    const value = process.env[name];
    if (value !== undefined && env[name] === undefined) env[name] = value;
  }

  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('the service process could not be started');

  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  let pending = '';

  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const parsed = parseLine(line);
      if (parsed) logs.push(parsed);
    }
    for (const wake of waiters) wake();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr += chunk;
  });

  const exited = new Promise<ChildExit>((resolve) => {
    child.once('exit', (code, signal) => {
      for (const wake of waiters) wake();
      resolve({ code, signal });
    });
  });
  let gone = false;
  void exited.then(() => {
    gone = true;
  });

  const waitForLog: ChildService['waitForLog'] = (match, timeoutMs = 15_000) =>
    new Promise((resolve, reject) => {
      let seen = 0;
      const check = () => {
        for (; seen < logs.length; seen += 1) {
          const line = logs[seen] as LogLine;
          if (match(line)) {
            finish();
            resolve(line);

            return;
          }
        }
        if (gone) {
          finish();
          reject(new Error(`the service exited before the awaited log line\n${stderr}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no matching log line within ${timeoutMs} ms\n${stderr}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<ChildExit> => {
    if (!gone) child.kill(signal);

    return exited;
  };

  let listening: LogLine;
  try {
    listening = await waitForLog(
      (line) => line.msg === 'listening' && typeof line.url === 'string',
      options.startTimeoutMs ?? 30_000,
    );
  } catch (error) {
    await kill();
    throw error;
  }
  const url = listening.url as string;

  return {
    pid,
    url,
    logs,
    stderr: () => stderr,
    waitForLog,
    post: (submission) =>
      fetch(`${url}/sites`, {
        method: 'POST',
        headers: submission.headers,
        body: JSON.stringify(submission.body),
      }),
    async admin<T>(method: string, path: string) {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${options.adminToken ?? ''}` },
      });

      return { status: response.status, body: (await response.json()) as T };
    },
    kill,
    exited,
  };
}

function parseLine(line: string): LogLine | undefined {
  if (line.trim() === '') return undefined;
  try {
    const parsed: unknown = JSON.parse(line);

    return typeof parsed === 'object' && parsed !== null ? (parsed as LogLine) : undefined;
  } catch {
    return { msg: 'unparsed output', text: line };
  }
}
