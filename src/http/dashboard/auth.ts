/**
 * Who may use the dashboard. A script sends the admin token as a Bearer header; a browser signs
 * in once through a form, and gets a cookie that proves it knew a token without holding it: the
 * time it was issued and an HMAC of that time keyed by the token. The raw token never travels in
 * a URL, and the cookie stops working when the token is rotated or the session grows old.
 *
 * Forms posted with the cookie must also carry the session's CSRF token (another HMAC of the
 * issue time) and must come from this origin; Bearer requests need neither, as browsers never
 * attach that header on their own.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import type { AdminToken } from '../../config.js';

/** The cookie's name; scoped to the dashboard's path. */
export const SESSION_COOKIE = 'so_dashboard';

/** How long a sign-in lasts. */
export const SESSION_MAX_AGE_MS = 12 * 60 * 60 * 1000;

/** An authenticated request: who asked, and how. */
export interface DashboardSession {
  operator: string;
  via: 'bearer' | 'cookie';
  /** The value forms must echo back; empty for Bearer requests, which need none. */
  csrf: string;
}

interface Credential {
  name: string;
  token: string;
  digest: Buffer;
}

/** The dashboard's view of the configured admin tokens. */
export class DashboardAuth {
  private readonly credentials: Credential[];

  constructor(
    tokens: readonly AdminToken[],
    private readonly now: () => number = Date.now,
  ) {
    this.credentials = tokens.map((entry) => ({ ...entry, digest: digest(entry.token) }));
  }

  /** False when no token is configured: then the dashboard does not exist. */
  get enabled(): boolean {
    return this.credentials.length > 0;
  }

  /** The token's name when `presented` is a configured token. */
  checkToken(presented: string): string | undefined {
    if (presented === '') return undefined;
    const presentedDigest = digest(presented);

    return this.credentials.find((entry) => timingSafeEqual(entry.digest, presentedDigest))
      ?.name;
  }

  /** A fresh cookie value for the holder of `presented`, or undefined when it is not a token. */
  issue(presented: string): { operator: string; value: string } | undefined {
    const operator = this.checkToken(presented);
    const credential = this.credentials.find((entry) => entry.name === operator);
    if (!operator || !credential) return undefined;

    const issuedAt = Math.floor(this.now() / 1000);

    return { operator, value: `${issuedAt}.${mac(credential.token, `session:${issuedAt}`)}` };
  }

  /** The session a cookie value proves, when it is genuine and not expired. */
  verify(value: string | undefined): DashboardSession | undefined {
    const match = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
    if (!match?.[1] || !match[2]) return undefined;

    const issuedAt = Number(match[1]);
    const ageMs = this.now() - issuedAt * 1000;
    if (ageMs > SESSION_MAX_AGE_MS || ageMs < -60_000) return undefined;

    const presented = Buffer.from(match[2]);
    for (const credential of this.credentials) {
      const expected = Buffer.from(mac(credential.token, `session:${issuedAt}`));
      if (timingSafeEqual(expected, presented)) {
        return {
          operator: credential.name,
          via: 'cookie',
          csrf: mac(credential.token, `csrf:${issuedAt}`),
        };
      }
    }

    return undefined;
  }
}

/** True when a form's CSRF value is the session's. */
export function csrfMatches(session: DashboardSession, presented: unknown): boolean {
  if (session.via === 'bearer') return true;
  if (typeof presented !== 'string' || presented.length !== session.csrf.length) return false;

  return timingSafeEqual(Buffer.from(presented), Buffer.from(session.csrf));
}

/**
 * True unless the browser says the request came from another site. Browsers send `Origin` on
 * every POST and `Sec-Fetch-Site` on every request; clients that send neither are not browsers,
 * and still need the CSRF token.
 */
export function fromSameOrigin(c: Context): boolean {
  const origin = c.req.header('origin');
  if (origin !== undefined) {
    if (origin === 'null') return false;
    const host = c.req.header('host') ?? new URL(c.req.url).host;
    try {
      return new URL(origin).host === host;
    } catch {
      return false;
    }
  }

  const site = c.req.header('sec-fetch-site');

  return site === undefined || site === 'same-origin';
}

/** Whether the client reached us over HTTPS (directly or through a proxy that says so). */
export function isSecure(c: Context): boolean {
  const forwarded = c.req.header('x-forwarded-proto')?.split(',')[0]?.trim();

  return (forwarded ?? new URL(c.req.url).protocol.replace(':', '')) === 'https';
}

function mac(key: string, message: string): string {
  return createHmac('sha256', key).update(`site-orchestrator dashboard ${message}`).digest(
    'base64url',
  );
}

/** Hashing first gives equal-length buffers for the constant-time comparison. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
