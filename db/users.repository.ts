/**
 * Users: the officers allowed to request sites. An e-mail address identifies a user whatever
 * its case; it is stored as given, trimmed.
 */
import { sql, type Kysely } from 'kysely';
import { TransientError, ValidationError } from '../src/errors.js';
import type { Database, UserRow } from './schema.js';

export type { UserRow } from './schema.js';

/**
 * Adds a user, or returns the one already registered under the same address in any case.
 *
 * @throws ValidationError (field `email`) when the address is empty or has no `@`.
 */
export async function addUser(db: Kysely<Database>, email: string): Promise<UserRow> {
  const address = email.trim();
  if (!address.includes('@')) {
    throw new ValidationError('email', 'an e-mail address needs an @');
  }

  const inserted = await db
    .insertInto('users')
    .values({ email: address })
    .onConflict((oc) => oc.expression(sql`lower(email)`).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return inserted;

  const existing = await findUserByEmail(db, address);
  // Only a delete between the two statements gets here; trying again will insert.
  if (!existing) {
    throw new TransientError('the user was deleted while being added', { service: 'database' });
  }

  return existing;
}

/** The user with this address, compared case-insensitively after trimming. */
export async function findUserByEmail(
  db: Kysely<Database>,
  email: string,
): Promise<UserRow | undefined> {
  return db
    .selectFrom('users')
    .selectAll()
    .where(sql<string>`lower(email)`, '=', email.trim().toLowerCase())
    .executeTakeFirst();
}

/** Every user, oldest first. */
export async function listUsers(db: Kysely<Database>): Promise<UserRow[]> {
  return db.selectFrom('users').selectAll().orderBy('id').execute();
}
