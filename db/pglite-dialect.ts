/**
 * A Kysely dialect over an in-process PGlite database.
 *
 * PGlite is one PostgreSQL session. If two Kysely transactions shared it, the second `BEGIN`
 * would join the first transaction and one's `ROLLBACK` would erase the other's committed
 * rows. So this driver hands out its single connection under a mutex: a transaction holds it
 * from `BEGIN` to `COMMIT`, and every other query waits its turn.
 *
 * Hazard: inside `db.transaction().execute(async (trx) => …)`, query through `trx` only. A
 * query through `db` waits for the connection the transaction holds, and never runs.
 */
import type { PGlite } from '@electric-sql/pglite';
import {
  AbortedTransactionError,
  CompiledQuery,
  IdentifierNode,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  RawNode,
  createQueryId,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import { PermanentError } from '../src/errors.js';

export interface PGliteDialectConfig {
  /** The database, or a function that opens it on first use. */
  pglite: PGlite | (() => Promise<PGlite>);
  /** Close the database when Kysely is destroyed. Defaults to true. */
  closeOnDestroy?: boolean;
}

/** Kysely dialect for PGlite: PostgreSQL's adapter, compiler and introspector, our driver. */
export class PGliteDialect implements Dialect {
  readonly #config: PGliteDialectConfig;

  constructor(config: PGliteDialectConfig) {
    this.#config = config;
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createDriver(): Driver {
    return new PGliteDriver(this.#config);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

/** Statements whose command tag counts the rows they changed. */
const COUNTING_COMMANDS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

class PGliteDriver implements Driver {
  readonly #config: PGliteDialectConfig;
  readonly #mutex = new Mutex();
  #pglite: PGlite | undefined;
  #connection: PGliteConnection | undefined;

  constructor(config: PGliteDialectConfig) {
    this.#config = config;
  }

  async init(): Promise<void> {
    const { pglite } = this.#config;
    this.#pglite = typeof pglite === 'function' ? await pglite() : pglite;

    await this.#pglite.waitReady;
    this.#connection = new PGliteConnection(this.#pglite);
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.#mutex.lock();
    const connection = this.#connection;
    if (!connection) {
      release();
      throw new PermanentError('the PGlite database is closed', { service: 'database' });
    }

    connection.release = release;

    return connection;
  }

  async beginTransaction(
    connection: DatabaseConnection,
    settings: TransactionSettings,
  ): Promise<void> {
    let statement = 'begin';
    if (settings.isolationLevel || settings.accessMode) {
      statement = 'start transaction';
      if (settings.isolationLevel) statement += ` isolation level ${settings.isolationLevel}`;
      if (settings.accessMode) statement += ` ${settings.accessMode}`;
    }

    await connection.executeQuery(CompiledQuery.raw(statement));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const { rows } = await connection.executeQuery<{ command?: string }>(
      CompiledQuery.raw('commit'),
    );

    // PostgreSQL answers COMMIT with a ROLLBACK tag when an earlier statement failed.
    if (rows[0]?.command === 'ROLLBACK') throw new AbortedTransactionError();
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  async savepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await connection.executeQuery(compile(savepointCommand('savepoint', name), createQueryId()));
  }

  async rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    const node = savepointCommand('rollback to', name);

    await connection.executeQuery(compile(node, createQueryId()));
  }

  async releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    await connection.executeQuery(compile(savepointCommand('release', name), createQueryId()));
  }

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    if (!(connection instanceof PGliteConnection)) return;

    const release = connection.release;
    connection.release = undefined;
    release?.();
  }

  async destroy(): Promise<void> {
    const pglite = this.#pglite;
    this.#pglite = undefined;
    if (!pglite) return;

    // Wait for whoever holds the connection, then keep it: nothing runs after destroy.
    await this.#mutex.lock();
    this.#connection = undefined;
    if (this.#config.closeOnDestroy !== false && !pglite.closed) await pglite.close();
  }
}

class PGliteConnection implements DatabaseConnection {
  readonly #pglite: PGlite;
  /** Set while a caller holds the connection; calling it lets the next caller in. */
  release: (() => void) | undefined;

  constructor(pglite: PGlite) {
    this.#pglite = pglite;
  }

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.#pglite.query<R>(query.sql, [...query.parameters], {
      rowMode: 'object',
    });
    const command = result.command ?? '';

    if (command === 'COMMIT' || command === 'ROLLBACK') {
      return { rows: [{ command } as R] };
    }

    // `affectedRows` sums a multi-statement query; a Kysely query is one statement.
    return {
      rows: result.rows,
      ...(COUNTING_COMMANDS.has(command)
        ? { numAffectedRows: BigInt(result.affectedRows ?? result.rowCount ?? 0) }
        : {}),
    };
  }

  /** PGlite has no cursors: the rows are read at once, then handed out in chunks. */
  async *streamQuery<R>(
    query: CompiledQuery,
    chunkSize = 100,
  ): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) {
      throw new RangeError('chunkSize must be a positive integer');
    }

    const { rows } = await this.executeQuery<R>(query);
    for (let start = 0; start < rows.length; start += chunkSize) {
      yield { rows: rows.slice(start, start + chunkSize) };
    }
  }
}

function savepointCommand(command: string, name: string): RawNode {
  // The identifier node quotes the name, as Kysely's own drivers do.
  return RawNode.createWithChildren([
    RawNode.createWithSql(`${command} `),
    IdentifierNode.create(name),
  ]);
}

/** First come, first served: `lock()` resolves with the function that unlocks. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();

  lock(): Promise<() => void> {
    let unlock!: () => void;
    const released = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => released);

    return previous.then(() => unlock);
  }
}
