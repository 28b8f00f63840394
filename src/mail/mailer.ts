/**
 * Sends e-mail over SMTP, or, with no SMTP server configured, writes each message as an `.eml`
 * file into an outbox folder. Failures come out as typed errors: worth retrying or not.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import nodemailer from 'nodemailer';
import type { SendMailOptions, Transporter } from 'nodemailer';

import { AppError, PermanentError, TransientError } from '../errors.js';

export interface MailSettings {
  /** `smtp://user:pass@host:port` or `smtps://…`; outbox mode when absent. */
  smtpUrl?: string;
  /** Where outbox mode writes its `.eml` files; created when missing. */
  outboxDir: string;
  /** The sender, e.g. `Sites <sites@example.gov.sg>`. */
  from: string;
  /** Limit on connecting, on the greeting, and on each idle wait of the socket. */
  timeoutMs?: number;
}

export interface OutgoingMail {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** A deterministic Message-ID lets a resend be recognised; generated when absent. */
  messageId?: string;
}

export interface SentMail {
  messageId: string;
  /** The `.eml` file, in outbox mode. */
  path?: string;
}

export interface Mailer {
  /** @throws {TransientError | PermanentError} with service 'smtp'. */
  send(mail: OutgoingMail, signal?: AbortSignal): Promise<SentMail>;
  close(): void;
  readonly mode: 'smtp' | 'outbox';
}

/** Default for `timeoutMs`: well under nodemailer's own minutes-long defaults. */
export const DEFAULT_MAIL_TIMEOUT_MS = 20_000;

/** Connection and socket conditions that may clear by themselves. */
const TRANSIENT_CONNECTION_CODES = new Set([
  'ECONNECTION',
  'ETIMEDOUT',
  'ESOCKET',
  'EDNS',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EMAXLIMIT',
]);

/** Outbox mode: a full disk or too many open files can pass. */
const TRANSIENT_FILE_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE', 'EBUSY', 'EAGAIN']);

/** Creates the mailer the settings call for. */
export function createMailer(settings: MailSettings): Mailer {
  return settings.smtpUrl === undefined || settings.smtpUrl === ''
    ? createOutboxMailer(settings)
    : createSmtpMailer(settings.smtpUrl, settings);
}

function createSmtpMailer(smtpUrl: string, settings: MailSettings): Mailer {
  const timeout = settings.timeoutMs ?? DEFAULT_MAIL_TIMEOUT_MS;

  // The timeouts must sit in the transport options: the second argument of createTransport
  // holds message defaults, and timeouts given there never reach the connection.
  const transport: Transporter = nodemailer.createTransport({
    url: smtpUrl,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    logger: false,
  });

  return {
    mode: 'smtp',

    async send(mail, signal) {
      try {
        const info = await transport.sendMail(toMessage(mail, settings.from, signal));

        return { messageId: info.messageId };
      } catch (error) {
        throw classifyMailError(error);
      }
    },

    close() {
      transport.close();
    },
  };
}

function createOutboxMailer(settings: MailSettings): Mailer {
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true });
  let folderReady: Promise<unknown> | undefined;

  return {
    mode: 'outbox',

    async send(mail, signal) {
      try {
        folderReady ??= mkdir(settings.outboxDir, { recursive: true });
        await folderReady;

        const info = await transport.sendMail(toMessage(mail, settings.from, signal));
        const path = join(settings.outboxDir, outboxFileName(info.messageId));

        // Write beside, then rename: a reader never sees half a message.
        const partial = `${path}.${randomBytes(4).toString('hex')}.part`;
        await writeFile(partial, info.message as Buffer, signal ? { signal } : {});
        await rename(partial, path);

        return { messageId: info.messageId, path };
      } catch (error) {
        folderReady = undefined;
        throw classifyMailError(error);
      }
    },

    close() {
      transport.close();
    },
  };
}

function toMessage(mail: OutgoingMail, from: string, signal?: AbortSignal): SendMailOptions {
  const message: SendMailOptions = {
    from,
    to: mail.to,
    subject: mail.subject,
    text: mail.text,
    html: mail.html,
  };
  if (mail.messageId !== undefined) message.messageId = mail.messageId;
  if (signal !== undefined) message.signal = signal;

  return message;
}

/** `<time>-<message id>.eml`, the id reduced to characters safe in any file system. */
function outboxFileName(messageId: string): string {
  const time = new Date().toISOString().replace(/[:.]/g, '-');
  const id = messageId.replace(/^<|>$/g, '').replace(/[^A-Za-z0-9@._-]/g, '_').slice(0, 150);

  return `${time}-${id}.eml`;
}

/**
 * Decides whether a mail failure is worth retrying. An SMTP reply decides first: 4xx is
 * transient; 5xx is permanent, except 503 (bad sequence of commands), which speaks of the
 * session rather than the message. Without a reply, the error code decides: lost, refused or
 * timed-out connections are transient. Everything else (bad credentials, a refused address,
 * bad configuration) is permanent.
 */
export function classifyMailError(error: unknown): AppError {
  if (error instanceof AppError) return error;

  const responseCode = readNumber(error, 'responseCode');
  const code = readString(error, 'code');
  const originalCode = readString(error, 'originalCode');
  const options = { service: 'smtp' as const, cause: error, status: responseCode, code };

  if (responseCode !== undefined && responseCode >= 400 && responseCode < 600) {
    const transient = responseCode < 500 || responseCode === 503;
    const message = `the mail server refused the message with reply ${responseCode}`;

    return transient ? new TransientError(message, options) : new PermanentError(message, options);
  }

  // A host name that does not resolve is a configuration fault, not a passing one.
  if (code === 'EDNS' && originalCode === 'ENOTFOUND') {
    return new PermanentError('the mail server host name does not resolve', options);
  }

  if (isAbort(error) || code === 'EABORT') {
    return new TransientError('sending the message was cancelled', options);
  }

  if (hasCode(TRANSIENT_CONNECTION_CODES, code, originalCode)) {
    return new TransientError('the mail server could not be reached', options);
  }

  if (hasCode(TRANSIENT_FILE_CODES, code, originalCode)) {
    return new TransientError('the message could not be written to the outbox', options);
  }

  return new PermanentError('the message could not be sent', options);
}

function hasCode(codes: Set<string>, ...candidates: Array<string | undefined>): boolean {
  return candidates.some((code) => code !== undefined && codes.has(code));
}

function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

function readNumber(value: unknown, key: string): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const field: unknown = (value as Record<string, unknown>)[key];

  return typeof field === 'number' ? field : undefined;
}

function readString(value: unknown, key: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const field: unknown = (value as Record<string, unknown>)[key];

  return typeof field === 'string' ? field : undefined;
}
