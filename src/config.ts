/**
 * Settings, parsed once at start-up from the environment and passed in from there on. No other
 * module reads `process.env`.
 */
import { z } from 'zod';

const optionalText = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** `name:token,name:token` or a bare token (named "admin"). */
const adminTokens = optionalText.transform((value, ctx) => {
  if (value === undefined) return [];

  const tokens: AdminToken[] = [];
  for (const entry of value.split(',')) {
    const item = entry.trim();
    if (item === '') continue;
    const colon = item.indexOf(':');
    const name = colon > 0 ? item.slice(0, colon) : 'admin';
    const token = colon > 0 ? item.slice(colon + 1) : item;
    if (token.length < 16) {
      ctx.addIssue({ code: 'custom', message: 'each token must be at least 16 characters' });

      return z.NEVER;
    }
    tokens.push({ name, token });
  }

  return tokens;
});

/** `KEY=value;KEY=value`, or a JSON object of strings. */
const environmentVariables = optionalText.transform((value, ctx) => {
  if (value === undefined) return {};
  if (value.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(value);
      const result = z.record(z.string(), z.string()).safeParse(parsed);
      if (result.success) return result.data;
    } catch {
      // reported below
    }
    ctx.addIssue({ code: 'custom', message: 'must be a JSON object of strings' });

    return z.NEVER;
  }

  const pairs: Record<string, string> = {};
  for (const entry of value.split(';')) {
    if (entry.trim() === '') continue;
    const equals = entry.indexOf('=');
    if (equals <= 0) {
      ctx.addIssue({ code: 'custom', message: 'expected KEY=value pairs separated by ";"' });

      return z.NEVER;
    }
    pairs[entry.slice(0, equals).trim()] = entry.slice(equals + 1);
  }

  return pairs;
});

/** Hosts that name this machine only: inspection events never leave it. */
const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** A `ws://` URL on a loopback host, for live inspection; anything else is refused. */
const loopbackWebSocketUrl = optionalText.refine(
  (value) => {
    if (value === undefined) return true;
    const url = parseUrl(value);

    return url !== undefined && url.protocol === 'ws:' && LOOPBACK_HOST.test(url.hostname);
  },
  { message: 'must be a ws:// URL on a loopback host (127.0.0.1, ::1 or localhost)' },
);

const environmentSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  FORMSG_MODE: z.enum(['production', 'staging', 'development', 'test']).default('production'),
  FORMSG_SECRET_KEY: optionalText.refine((v) => v === undefined || isFormSecretKey(v), {
    message: 'must be the form secret key FormSG gave you: 32 bytes in base64',
  }),
  FORMSG_WEBHOOK_URL: z.url().optional(),
  FORMSG_FORM_ID: optionalText,
  FIELD_EMAIL: z.string().default('Government E-mail'),
  FIELD_AGENCY: z.string().default('Agency'),
  FIELD_REPO_NAME: z.string().default('Repository Name'),
  FIELD_SITE_NAME: z.string().default('Site Name'),
  FIELD_POINT_OF_CONTACT: z.string().default('Point of Contact'),

  DATABASE_URL: optionalText,
  PGLITE_DIR: z.string().default('.data/pglite'),

  GITHUB_TOKEN: optionalText,
  GITHUB_ORG: z.string().default('site-platform'),
  GITHUB_API_URL: z.url().default('https://api.github.com'),
  GITHUB_TEMPLATE: optionalText.refine((v) => v === undefined || /^[^/\s]+\/[^/\s]+$/.test(v), {
    message: 'must look like owner/repository',
  }),
  GITHUB_TEAM: optionalText,

  AWS_REGION: z.string().default('ap-southeast-1'),
  AMPLIFY_ENDPOINT: z.url().optional(),
  AWS_ACCESS_KEY_ID: optionalText,
  AWS_SECRET_ACCESS_KEY: optionalText,
  AWS_SESSION_TOKEN: optionalText,
  AMPLIFY_BUILD_SPEC: optionalText,
  AMPLIFY_ENV_VARS: environmentVariables,

  SMTP_URL: optionalText.refine(
    (v) => v === undefined || ['smtp:', 'smtps:'].includes(parseUrl(v)?.protocol ?? ''),
    { message: 'must be an smtp:// or smtps:// URL' },
  ),
  MAIL_OUTBOX_DIR: z.string().default('.data/outbox'),
  MAIL_FROM: z.string().default('Site Platform <no-reply@sites.localhost>'),
  SUPPORT_EMAIL: optionalText,
  OPS_EMAIL: optionalText.pipe(z.email().optional()),

  ADMIN_TOKEN: adminTokens,

  RETRY_MAX_ATTEMPTS: positiveInt(5),
  RETRY_MAX_ELAPSED_MS: positiveInt(10 * 60_000),
  RETRY_BASE_DELAY_MS: positiveInt(1_000),
  RETRY_MAX_DELAY_MS: positiveInt(60_000),
  STEP_TIMEOUT_MS: positiveInt(30_000),
  TEMPLATE_READY_TIMEOUT_MS: positiveInt(60_000),
  RESUME_INTERVAL_MS: positiveInt(30_000),
  RUN_DRIVER: z.enum(['local', 'pgboss']).default('local'),
  ALLOW_SANDBOX: z.enum(['true', 'false']).optional(),
  WORKER_CONCURRENCY: z.coerce.number().int().min(0).max(64).default(4),

  INSPECT_WS_URL: loopbackWebSocketUrl,
});

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AdminToken {
  name: string;
  token: string;
}

export interface RetryPolicy {
  maxAttempts: number;
  maxElapsedMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface Config {
  port: number;
  host: string;
  logLevel: z.infer<typeof environmentSchema>['LOG_LEVEL'];
  formsg: {
    mode: 'production' | 'staging' | 'development' | 'test';
    secretKey: string | undefined;
    /** The public URL FormSG posts to; signatures cover it. */
    webhookUrl: string;
    formId: string | undefined;
    fields: {
      email: string;
      agency: string;
      repoName: string;
      siteName: string;
      pointOfContact: string;
    };
  };
  database: { url: string | undefined; pgliteDir: string };
  /** Absent token: the sandbox emulators stand in for GitHub and Amplify. */
  github: {
    token: string | undefined;
    org: string;
    apiUrl: string;
    template: string | undefined;
    team: string | undefined;
    /**
     * Whether the built-in emulators may stand in when no token is set: by default only when
     * FORMSG_MODE is not `production`, so real officers are never told a sandbox site exists.
     */
    allowSandbox: boolean;
  };
  amplify: {
    region: string;
    endpoint: string | undefined;
    credentials: AwsCredentials | undefined;
    buildSpec: string | undefined;
    environmentVariables: Record<string, string>;
  };
  mail: {
    smtpUrl: string | undefined;
    outboxDir: string;
    from: string;
    supportEmail: string | undefined;
    opsEmail: string | undefined;
  };
  adminTokens: AdminToken[];
  retry: RetryPolicy;
  stepTimeoutMs: number;
  templateReadyTimeoutMs: number;
  /** How often to look for unfinished runs no instance is driving. */
  resumeIntervalMs: number;
  /**
   * `local`: each instance drives the runs it admits. `pgboss`: runs go through a job queue in
   * PostgreSQL and any instance with workers drives them.
   */
  driver: { kind: 'local' | 'pgboss'; concurrency: number };
  /** Live inspection of running machines; off when `wsUrl` is unset. */
  inspect: { wsUrl: string | undefined };
}

/** Raised when a setting is missing or malformed; the message names every offending variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses settings from an environment (usually `process.env`). */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const result = environmentSchema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const variable = issue.path.join('.') || 'environment';

      return `  ${variable}: ${issue.message}`;
    });

    throw new ConfigError(`invalid settings:\n${lines.join('\n')}`);
  }

  const e = result.data;
  const hasKeyId = e.AWS_ACCESS_KEY_ID !== undefined;
  if (hasKeyId !== (e.AWS_SECRET_ACCESS_KEY !== undefined)) {
    throw new ConfigError(
      'invalid settings:\n  AWS_SECRET_ACCESS_KEY: ' +
        'set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither',
    );
  }

  if (e.RUN_DRIVER === 'pgboss' && !e.DATABASE_URL) {
    throw new ConfigError(
      'invalid settings:\n  RUN_DRIVER: pgboss keeps its queue in PostgreSQL; set DATABASE_URL',
    );
  }

  const credentials = hasKeyId
    ? {
        accessKeyId: e.AWS_ACCESS_KEY_ID as string,
        secretAccessKey: e.AWS_SECRET_ACCESS_KEY as string,
        ...(e.AWS_SESSION_TOKEN ? { sessionToken: e.AWS_SESSION_TOKEN } : {}),
      }
    : undefined;

  return {
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    formsg: {
      mode: e.FORMSG_MODE,
      secretKey: e.FORMSG_SECRET_KEY,
      webhookUrl: e.FORMSG_WEBHOOK_URL ?? `http://127.0.0.1:${e.PORT}/sites`,
      formId: e.FORMSG_FORM_ID,
      fields: {
        email: e.FIELD_EMAIL.trim(),
        agency: e.FIELD_AGENCY.trim(),
        repoName: e.FIELD_REPO_NAME.trim(),
        siteName: e.FIELD_SITE_NAME.trim(),
        pointOfContact: e.FIELD_POINT_OF_CONTACT.trim(),
      },
    },
    database: { url: e.DATABASE_URL, pgliteDir: e.PGLITE_DIR },
    github: {
      token: e.GITHUB_TOKEN,
      org: e.GITHUB_ORG,
      apiUrl: e.GITHUB_API_URL,
      template: e.GITHUB_TEMPLATE,
      team: e.GITHUB_TEAM,
      allowSandbox: e.ALLOW_SANDBOX
        ? e.ALLOW_SANDBOX === 'true'
        : e.FORMSG_MODE !== 'production',
    },
    amplify: {
      region: e.AWS_REGION,
      endpoint: e.AMPLIFY_ENDPOINT,
      credentials,
      buildSpec: e.AMPLIFY_BUILD_SPEC,
      environmentVariables: e.AMPLIFY_ENV_VARS,
    },
    mail: {
      smtpUrl: e.SMTP_URL,
      outboxDir: e.MAIL_OUTBOX_DIR,
      from: e.MAIL_FROM,
      supportEmail: e.SUPPORT_EMAIL,
      opsEmail: e.OPS_EMAIL,
    },
    adminTokens: e.ADMIN_TOKEN,
    retry: {
      maxAttempts: e.RETRY_MAX_ATTEMPTS,
      maxElapsedMs: e.RETRY_MAX_ELAPSED_MS,
      baseDelayMs: e.RETRY_BASE_DELAY_MS,
      maxDelayMs: e.RETRY_MAX_DELAY_MS,
    },
    stepTimeoutMs: e.STEP_TIMEOUT_MS,
    templateReadyTimeoutMs: e.TEMPLATE_READY_TIMEOUT_MS,
    resumeIntervalMs: e.RESUME_INTERVAL_MS,
    driver: { kind: e.RUN_DRIVER, concurrency: e.WORKER_CONCURRENCY },
    inspect: { wsUrl: e.INSPECT_WS_URL },
  };
}

/** Every secret value in the settings, for scrubbing logs, snapshots and e-mails. */
export function secretValues(config: Config): string[] {
  const values = [
    config.formsg.secretKey,
    config.github.token,
    config.amplify.credentials?.secretAccessKey,
    config.amplify.credentials?.sessionToken,
    ...config.adminTokens.map((entry) => entry.token),
  ];
  if (config.mail.smtpUrl) {
    const password = safeUrlPassword(config.mail.smtpUrl);
    if (password) values.push(password);
  }

  return values.filter((value): value is string => typeof value === 'string' && value.length >= 6);
}

/** A Curve25519 secret key, as FormSG hands out: 32 bytes, base64. */
function isFormSecretKey(text: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return false;

  return Buffer.from(text, 'base64').length === 32;
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function safeUrlPassword(url: string): string | undefined {
  try {
    const password = decodeURIComponent(new URL(url).password);

    return password === '' ? undefined : password;
  } catch {
    return undefined;
  }
}
