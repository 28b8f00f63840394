/**
 * Typed errors. Whether an error is worth retrying is a property of its class, decided where the
 * error is first understood (the GitHub, Amplify, mail and database adapters), never by reading
 * message text further up. HTTP status codes are chosen only at the Hono edge.
 */

/** The outside systems a step talks to. */
export type Service = 'github' | 'amplify' | 'smtp' | 'database' | 'formsg' | 'orchestrator';

export interface AppErrorOptions {
  service: Service;
  /** Upstream status code, when the error came from an HTTP API. */
  status?: number;
  /** Upstream error name or code (`x-amzn-errortype`, a Postgres SQLSTATE, a socket code). */
  code?: string;
  /** How long the upstream asked us to wait before trying again. */
  retryAfterMs?: number;
  cause?: unknown;
}

/**
 * Socket codes that say the connection failed, not the request: worth another try whoever
 * the peer is (GitHub, Amplify, PostgreSQL).
 */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
]);

/** Base class of every error this service raises on purpose. */
export abstract class AppError extends Error {
  abstract readonly retryable: boolean;
  readonly service: Service;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options: AppErrorOptions) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.service = options.service;
    this.status = options.status;
    this.code = options.code;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A fault that may clear by itself: 5xx, throttling, timeouts, connection resets. */
export class TransientError extends AppError {
  readonly retryable = true;
}

/** A fault that will not clear by trying again: bad input, bad credentials, a taken name. */
export class PermanentError extends AppError {
  readonly retryable = false;
}

/** The requested repository or app name already belongs to something this run did not create. */
export class NameTakenError extends PermanentError {}

/** A required answer is missing or breaks a rule; `field` names the form question. */
export class ValidationError extends PermanentError {
  readonly field: string;

  constructor(field: string, message: string) {
    super(message, { service: 'formsg' });
    this.field = field;
  }
}

/** What the machine keeps of an error: plain data, safe to persist and to show. */
export interface ErrorRecord {
  name: string;
  message: string;
  retryable: boolean;
  service: Service;
  status?: number;
  code?: string;
  retryAfterMs?: number;
  field?: string;
}

/** Turns anything thrown into an ErrorRecord. Unknown errors count as permanent. */
export function toErrorRecord(error: unknown): ErrorRecord {
  if (error instanceof AppError) {
    const record: ErrorRecord = {
      name: error.name,
      message: error.message,
      retryable: error.retryable,
      service: error.service,
    };
    if (error.status !== undefined) record.status = error.status;
    if (error.code !== undefined) record.code = error.code;
    if (error.retryAfterMs !== undefined) record.retryAfterMs = error.retryAfterMs;
    if (error instanceof ValidationError) record.field = error.field;

    return record;
  }

  if (isAbortError(error)) {
    return {
      name: 'TimeoutError',
      message: 'the call timed out',
      retryable: true,
      service: 'orchestrator',
    };
  }

  const message = error instanceof Error ? error.message : String(error);

  return { name: 'UnexpectedError', message, retryable: false, service: 'orchestrator' };
}

/** True for the errors fetch, undici and the AWS SDK raise when a signal aborts or times out. */
export function isAbortError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;

  return error.name === 'AbortError' || error.name === 'TimeoutError';
}
