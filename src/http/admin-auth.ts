/**
 * Bearer-token guard for the admin routes. The routes do not exist (404) when no token is
 * configured; a missing or wrong token is 401. The matching token's name is kept on the
 * context as `operator`, so actions can be recorded with who asked.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { AdminToken } from '../config.js';

export type AdminVariables = { operator: string };

export function requireAdmin(
  tokens: AdminToken[],
): MiddlewareHandler<{ Variables: AdminVariables }> {
  const digests = tokens.map((entry) => ({ name: entry.name, digest: digest(entry.token) }));

  return async (c, next) => {
    if (digests.length === 0) return c.json({ error: 'not_found' }, 404);

    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    const presented = match?.[1] ? digest(match[1]) : undefined;
    const found = presented
      ? digests.find((entry) => timingSafeEqual(entry.digest, presented))
      : undefined;

    if (!found) {
      c.header('WWW-Authenticate', 'Bearer realm="site-orchestrator"');

      const message = 'a valid admin bearer token is required';

      return c.json({ error: 'unauthorized', message }, 401);
    }

    c.set('operator', found.name);
    await next();
  };
}

/** Hashing first gives equal-length buffers for the constant-time comparison. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
