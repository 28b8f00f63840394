/**
 * Database errors, classified where they are first understood.
 *
 * PGlite and `pg` raise different classes for the same fault, so the decision rests on the
 * SQLSTATE in `.code` (or a Node socket code), never on the class or the message. Every query
 * issued through `openDatabase` passes through `typedErrorsDialect`, so callers see a
 * `TransientError` or a `PermanentError` whose `code` is the SQLSTATE (`'23505'` for a unique
 * violation) and whose `cause` is the driver's original error.
 */
import {
  isAbortedTransactionError,
  type CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import { AppError, NETWORK_ERROR_CODES, PermanentError, TransientError } from '../src/errors.js';

/** SQLSTATE of a unique violation. */
export const UNIQUE_VIOLATION = '23505';

/** SQLSTATE classes (first two characters) whose faults may clear by themselves. */
const TRANSIENT_CLASSES = new Set([
  '08', // connection exception
  '53', // insufficient resources
]);

/** Single SQLSTATEs that may clear by themselves. */
const TRANSIENT_STATES = new Set([
  '40001', // serialization failure
  '40003', // statement completion unknown
  '40P01', // deadlock detected
  '55P03', // lock not available
  '57014', // query cancelled (statement timeout)
  '57P01', // admin shutdown
  '57P02', // crash shutdown
  '57P03', // cannot connect now
]);

/** Where a fault happened: failing to obtain a connection is worth another try. */
export type DatabasePhase = 'connect' | 'query';

/**
 * Turns anything a driver threw into an AppError. An error that is already an AppError is
 * returned as it is.
 */
export function toDatabaseError(error: unknown, phase: DatabasePhase = 'query'): AppError {
  if (error instanceof AppError) return error;

  const code = codeOf(error);
  const cause = error;

  if (isAbortedTransactionError(error)) {
    return new PermanentError('the transaction was rolled back instead of committed', {
      service: 'database',
      code: '25P02',
      cause,
    });
  }

  if (code !== undefined && NETWORK_ERROR_CODES.has(code)) {
    return new TransientError('the database could not be reached', {
      service: 'database',
      code,
      cause,
    });
  }

  if (code !== undefined && isSqlState(code)) {
    const options = { service: 'database' as const, code, cause };
    const constraint = constraintOf(error);
    const message = constraint
      ? `the database refused the statement (SQLSTATE ${code}, constraint ${constraint})`
      : `the database refused the statement (SQLSTATE ${code})`;

    return isTransientState(code)
      ? new TransientError(message, options)
      : new PermanentError(message, options);
  }

  // Without a code, a fault while obtaining a connection (a pool timeout, a closed socket) is
  // still a connection fault; one while running a statement is a bug until shown otherwise.
  const options = { service: 'database' as const, cause, ...(code ? { code } : {}) };
  if (phase === 'connect') {
    return new TransientError('no database connection could be obtained', options);
  }

  return new PermanentError('the database call failed', options);
}

function codeOf(error: unknown): string | undefined {
  if (error === null || typeof error !== 'object') return undefined;
  const code: unknown = (error as { code?: unknown }).code;

  return typeof code === 'string' ? code : undefined;
}

function constraintOf(error: unknown): string | undefined {
  const constraint: unknown = (error as { constraint?: unknown }).constraint;

  return typeof constraint === 'string' && constraint !== '' ? constraint : undefined;
}

function isSqlState(code: string): boolean {
  // No SQLSTATE class starts with E; Node's error codes (EPIPE) all do.
  return /^[0-9A-DF-Z][0-9A-Z]{4}$/.test(code);
}

function isTransientState(code: string): boolean {
  return TRANSIENT_STATES.has(code) || TRANSIENT_CLASSES.has(code.slice(0, 2));
}

/**
 * Wraps a dialect so that every fault its driver raises reaches the caller as a typed error.
 * The adapter, introspector and query compiler are the wrapped dialect's own.
 */
export function typedErrorsDialect(dialect: Dialect): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createDriver: () => new TypedErrorsDriver(dialect.createDriver()),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createIntrospector: (db: Kysely<any>) => dialect.createIntrospector(db),
  };
}

class TypedErrorsDriver implements Driver {
  readonly #inner: Driver;
  readonly #unwrapped = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(inner: Driver) {
    this.#inner = inner;
  }

  init(): Promise<void> {
    return guard(() => this.#inner.init(), 'connect');
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const inner = await guard(() => this.#inner.acquireConnection(), 'connect');
    const outer = new TypedErrorsConnection(inner);
    this.#unwrapped.set(outer, inner);

    return outer;
  }

  beginTransaction(
    connection: DatabaseConnection,
    settings: TransactionSettings,
  ): Promise<void> {
    const inner = this.#unwrap(connection);

    return guard(() => this.#inner.beginTransaction(inner, settings));
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    const inner = this.#unwrap(connection);

    return guard(() => this.#inner.commitTransaction(inner));
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const inner = this.#unwrap(connection);

    return guard(() => this.#inner.rollbackTransaction(inner));
  }

  async savepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    const inner = this.#unwrap(connection);
    const savepoint = this.#inner.savepoint?.bind(this.#inner);
    if (!savepoint) throw unsupported('savepoints');

    await guard(() => savepoint(inner, name, compile));
  }

  async rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    const inner = this.#unwrap(connection);
    const rollback = this.#inner.rollbackToSavepoint?.bind(this.#inner);
    if (!rollback) throw unsupported('savepoints');

    await guard(() => rollback(inner, name, compile));
  }

  async releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    const inner = this.#unwrap(connection);
    const release = this.#inner.releaseSavepoint?.bind(this.#inner);
    if (!release) throw unsupported('savepoints');

    await guard(() => release(inner, name, compile));
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(this.#unwrap(connection));
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }

  #unwrap(connection: DatabaseConnection): DatabaseConnection {
    return this.#unwrapped.get(connection) ?? connection;
  }
}

class TypedErrorsConnection implements DatabaseConnection {
  readonly #inner: DatabaseConnection;

  constructor(inner: DatabaseConnection) {
    this.#inner = inner;
  }

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    return guard(() => this.#inner.executeQuery<R>(query));
  }

  async *streamQuery<R>(
    query: CompiledQuery,
    chunkSize?: number,
  ): AsyncIterableIterator<QueryResult<R>> {
    try {
      yield* this.#inner.streamQuery<R>(query, chunkSize);
    } catch (error) {
      throw toDatabaseError(error);
    }
  }
}

async function guard<T>(work: () => Promise<T>, phase?: DatabasePhase): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw toDatabaseError(error, phase);
  }
}

function unsupported(feature: string): PermanentError {
  return new PermanentError(`the database driver does not support ${feature}`, {
    service: 'database',
  });
}
