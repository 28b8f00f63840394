/**
 * A real SMTP server on 127.0.0.1 for tests: accepts any sender, recipient and login, parses
 * each message, and can be told to refuse the next messages with a chosen reply code.
 */

import type { AddressInfo } from 'node:net';

import { simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerError } from 'smtp-server';

/** One message the sink accepted. `from` and `to` are the envelope's addresses. */
export interface CapturedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  html: string;
  messageId: string;
  raw: string;
}

/** A refusal: the reply code sent at the end of DATA, for the next `times` messages. */
export interface SinkFailure {
  code: number;
  times?: number;
  message?: string;
}

export interface SmtpSink {
  /** `smtp://127.0.0.1:<port>` */
  url: string;
  /** Accepted messages, in arrival order. */
  messages: CapturedMail[];
  /** Resolves once `count` messages have arrived, with all of them. */
  waitFor(count: number, timeoutMs?: number): Promise<CapturedMail[]>;
  /** Refuses the next `times` (default 1) messages with `code`. */
  failNext(code: number, times?: number): void;
  close(): Promise<void>;
}

export async function startSmtpSink(opts: { failWith?: SinkFailure } = {}): Promise<SmtpSink> {
  const messages: CapturedMail[] = [];
  const failures: SinkFailure[] = [];
  const waiters = new Set<() => void>();
  if (opts.failWith !== undefined) failures.push({ ...opts.failWith });

  const nextFailure = (): SinkFailure | undefined => {
    const failure = failures[0];
    if (failure === undefined) return undefined;

    const left = (failure.times ?? 1) - 1;
    if (left <= 0) failures.shift();
    else failure.times = left;

    return failure;
  };

  const server = new SMTPServer({
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    closeTimeout: 1000,
    onAuth(_auth, _session, callback) {
      callback(null, { user: 'sink' });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (error) => callback(error));
      stream.on('end', () => {
        const failure = nextFailure();
        if (failure !== undefined) {
          const refusal: SMTPServerError = new Error(failure.message ?? 'refused by the sink');
          refusal.responseCode = failure.code;
          callback(refusal);

          return;
        }

        const raw = Buffer.concat(chunks).toString('utf8');
        const from = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address;
        const to = session.envelope.rcptTo.map((recipient) => recipient.address);

        simpleParser(raw).then(
          (parsed) => {
            messages.push({
              from,
              to,
              subject: parsed.subject ?? '',
              text: parsed.text ?? '',
              html: typeof parsed.html === 'string' ? parsed.html : '',
              messageId: parsed.messageId ?? '',
              raw,
            });
            for (const wake of waiters) wake();
            callback();
          },
          (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
        );
      });
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.server.address() as AddressInfo;

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,

    waitFor(count, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          if (messages.length < count) return false;

          clearTimeout(timer);
          waiters.delete(wake);
          resolve([...messages]);

          return true;
        };
        const wake = (): void => void check();
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(new Error(`the sink received ${messages.length} of ${count} messages in time`));
        }, timeoutMs);

        waiters.add(wake);
        check();
      });
    },

    failNext(code, times = 1) {
      failures.push({ code, times });
    },

    close() {
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
