/**
 * The AWS Amplify adapter: the few calls the orchestrator makes, each safe to repeat, and the one
 * place where Amplify's errors are turned into our typed errors.
 */
import {
  AmplifyClient,
  CreateAppCommand,
  CreateBranchCommand,
  DeleteAppCommand,
  GetAppCommand,
  GetBranchCommand,
  ListAppsCommand,
  ListJobsCommand,
  StartJobCommand,
  type App,
} from '@aws-sdk/client-amplify';
import {
  AppError,
  NETWORK_ERROR_CODES,
  PermanentError,
  TransientError,
  isAbortError,
} from './errors.js';

export interface AmplifySettings {
  region: string;
  /** Where to send requests instead of AWS, for instance the sandbox emulator. */
  endpoint?: string;
  /** Static credentials; the SDK's default provider chain when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Upper bound for each call, from sending the request to reading the answer. */
  timeoutMs: number;
}

/** What the orchestrator keeps of an Amplify app. */
export interface AppInfo {
  appId: string;
  name: string;
  /** `<appId>.amplifyapp.com`; a branch is served at `<branch>.<defaultDomain>`. */
  defaultDomain: string;
  tags: Record<string, string>;
}

export interface CreateAppArgs {
  name: string;
  /** Repository URL, e.g. `https://github.com/org/repo`. */
  repository: string;
  /** GitHub token Amplify uses to install its webhook. Sent once; never logged or returned. */
  accessToken: string;
  buildSpec?: string;
  environmentVariables?: Record<string, string>;
  /** Set atomically with the app; the marker that proves this run created it. */
  tags: Record<string, string>;
  signal?: AbortSignal;
}

/** The Amplify calls the orchestrator makes. Every failure is an `AppError`. */
export interface AmplifyGateway {
  createApp(args: CreateAppArgs): Promise<AppInfo>;
  /** The app, or null when it does not exist. */
  getApp(appId: string, signal?: AbortSignal): Promise<AppInfo | null>;
  /** Finds apps whose tags include all of `tags` (ListApps, following nextToken). */
  findAppsByTags(tags: Record<string, string>, signal?: AbortSignal): Promise<AppInfo[]>;
  /** Creates the branch; an existing branch counts as done (confirm with GetBranch). */
  ensureBranch(
    appId: string,
    branchName: string,
    stage: 'PRODUCTION' | 'DEVELOPMENT',
    signal?: AbortSignal,
  ): Promise<void>;
  /** Starts a RELEASE job unless one already exists for the branch; returns the job id. */
  ensureReleaseJob(appId: string, branchName: string, signal?: AbortSignal): Promise<string>;
  /** Deletes the app; already gone counts as done. */
  deleteApp(appId: string, signal?: AbortSignal): Promise<boolean>;
}

/** Context that makes a classified error's message useful without leaking anything. */
export interface AmplifyErrorContext {
  /** Amplify operation name, e.g. `CreateApp`. */
  operation?: string;
  /** Values to blank out of upstream text (tokens, keys) should the service echo them. */
  secrets?: readonly string[];
  /** The call's own deadline fired (as opposed to the caller aborting). */
  timedOut?: boolean;
  timeoutMs?: number;
}

/**
 * Builds the gateway. The SDK is told not to retry (`maxAttempts: 1`): the machine owns
 * retrying, with backoff that survives restarts, and needs to see every failure.
 */
export function createAmplifyClient(settings: AmplifySettings): AmplifyGateway {
  const client = new AmplifyClient({
    region: settings.region,
    maxAttempts: 1,
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    ...(settings.credentials === undefined ? {} : { credentials: settings.credentials }),
  });
  const credentialSecrets = settings.credentials
    ? [settings.credentials.secretAccessKey, settings.credentials.sessionToken ?? '']
    : [];

  /** Runs one SDK call under the caller's signal and our deadline; failures become AppErrors. */
  async function call<T>(
    operation: string,
    signal: AbortSignal | undefined,
    send: (options: { abortSignal: AbortSignal }) => Promise<T>,
    secrets: readonly string[] = [],
  ): Promise<T> {
    const deadline = AbortSignal.timeout(settings.timeoutMs);
    const abortSignal = signal ? AbortSignal.any([signal, deadline]) : deadline;

    try {
      return await send({ abortSignal });
    } catch (error) {
      throw classifyAmplifyError(error, {
        operation,
        secrets: [...secrets, ...credentialSecrets],
        timedOut: deadline.aborted,
        timeoutMs: settings.timeoutMs,
      });
    }
  }

  async function getBranchExists(
    appId: string,
    branchName: string,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    try {
      await call('GetBranch', signal, (options) =>
        client.send(new GetBranchCommand({ appId, branchName }), options),
      );

      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  async function findReleaseJob(
    appId: string,
    branchName: string,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    let nextToken: string | undefined;

    do {
      const page = await call('ListJobs', signal, (options) =>
        client.send(new ListJobsCommand({ appId, branchName, maxResults: 50, nextToken }), options),
      );
      const release = page.jobSummaries?.find((job) => job.jobType === 'RELEASE' && job.jobId);
      if (release?.jobId) return release.jobId;

      nextToken = page.nextToken || undefined;
    } while (nextToken);

    return undefined;
  }

  return {
    async createApp(args) {
      const result = await call(
        'CreateApp',
        args.signal,
        (options) =>
          client.send(
            new CreateAppCommand({
              name: args.name,
              repository: args.repository,
              accessToken: args.accessToken,
              platform: 'WEB',
              buildSpec: args.buildSpec,
              environmentVariables: args.environmentVariables,
              tags: args.tags,
            }),
            options,
          ),
        [args.accessToken],
      );

      return toAppInfo(result.app, 'CreateApp');
    },

    async getApp(appId, signal) {
      try {
        const result = await call('GetApp', signal, (options) =>
          client.send(new GetAppCommand({ appId }), options),
        );

        return toAppInfo(result.app, 'GetApp');
      } catch (error) {
        if (isNotFound(error)) return null;
        throw error;
      }
    },

    async findAppsByTags(tags, signal) {
      const wanted = Object.entries(tags);
      if (wanted.length === 0) {
        // Matching on no tag would adopt every app in the account.
        throw new PermanentError('findAppsByTags needs at least one tag', { service: 'amplify' });
      }

      const found: AppInfo[] = [];
      let nextToken: string | undefined;

      do {
        const page = await call('ListApps', signal, (options) =>
          client.send(new ListAppsCommand({ maxResults: 100, nextToken }), options),
        );
        for (const app of page.apps ?? []) {
          if (wanted.every(([key, value]) => app.tags?.[key] === value)) {
            found.push(toAppInfo(app, 'ListApps'));
          }
        }

        nextToken = page.nextToken || undefined;
      } while (nextToken);

      return found;
    },

    async ensureBranch(appId, branchName, stage, signal) {
      try {
        await call('CreateBranch', signal, (options) =>
          client.send(
            new CreateBranchCommand({ appId, branchName, stage, enableAutoBuild: true }),
            options,
          ),
        );
      } catch (error) {
        // Amplify reports an existing branch as a plain BadRequestException. Rather than read
        // its message, ask whether the branch is there.
        const maybeExists = error instanceof AppError && error.code === 'BadRequestException';
        if (maybeExists && (await getBranchExists(appId, branchName, signal))) return;
        throw error;
      }
    },

    async ensureReleaseJob(appId, branchName, signal) {
      const existing = await findReleaseJob(appId, branchName, signal);
      if (existing) return existing;

      const result = await call('StartJob', signal, (options) =>
        client.send(new StartJobCommand({ appId, branchName, jobType: 'RELEASE' }), options),
      );
      const jobId = result.jobSummary?.jobId;
      if (!jobId) throw malformed('StartJob', 'a job id');

      return jobId;
    },

    async deleteApp(appId, signal) {
      try {
        await call('DeleteApp', signal, (options) =>
          client.send(new DeleteAppCommand({ appId }), options),
        );

        return true;
      } catch (error) {
        if (isNotFound(error)) return false;
        throw error;
      }
    },
  };
}

/** Error names that mean "slow down"; all retryable. */
const THROTTLING = new Set([
  'TooManyRequestsException',
  'ThrottlingException',
  'Throttling',
  'ThrottledException',
  'RequestLimitExceeded',
  'SlowDown',
]);

/** Amplify's own server-side faults; retryable. */
const SERVER_FAULTS = new Set([
  'InternalFailureException',
  'DependentServiceFailureException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'InternalServerError',
]);

/** Socket failures, plus Amplify's own name for an unresolvable host and undici's. */
const NETWORK_CODES = new Set([...NETWORK_ERROR_CODES, 'ENOTFOUND', 'UND_ERR_SOCKET']);

/**
 * Turns whatever the SDK threw into a TransientError or a PermanentError, from the error name,
 * the HTTP status, `$fault` or the socket error code; never from the message, with one
 * documented exception (throttling sent as BadRequestException "Rate exceeded").
 *
 * `LimitExceededException` is permanent: in Amplify it means a service quota (apps per account,
 * branches per app) is used up, which waiting does not cure, even though it arrives as a 429.
 */
export function classifyAmplifyError(
  error: unknown,
  context: AmplifyErrorContext = {},
): AppError {
  if (error instanceof AppError) return error;

  const operation = context.operation ?? 'call';
  const secrets = context.secrets ?? [];

  if (isAbortError(error)) {
    const code = context.timedOut ? 'TimeoutError' : (error as Error).name;
    const message = context.timedOut
      ? `Amplify ${operation} timed out after ${context.timeoutMs ?? '?'} ms`
      : `Amplify ${operation} was aborted`;

    return new TransientError(message, { service: 'amplify', code, cause: error });
  }

  if (!(error instanceof Error)) {
    return new PermanentError(`Amplify ${operation} failed with a non-error value`, {
      service: 'amplify',
    });
  }

  const details = error as Error & {
    $metadata?: { httpStatusCode?: number };
    $fault?: string;
    $response?: { headers?: Record<string, string | undefined> };
    code?: unknown;
  };
  const status = details.$metadata?.httpStatusCode;
  const socketCode = typeof details.code === 'string' ? details.code : undefined;
  const code = status === undefined && socketCode ? socketCode : error.name;
  const detail = redact(error.message, secrets);
  const where = status === undefined ? code : `${code} (${status})`;
  const options = {
    service: 'amplify' as const,
    code,
    cause: error,
    ...(status === undefined ? {} : { status }),
    ...retryAfter(details.$response?.headers?.['retry-after']),
  };
  const message = `Amplify ${operation} failed with ${where}: ${detail}`;

  if (status === undefined && socketCode && NETWORK_CODES.has(socketCode)) {
    return new TransientError(message, options);
  }
  if (THROTTLING.has(error.name) || SERVER_FAULTS.has(error.name)) {
    return new TransientError(message, options);
  }
  if (error.name === 'LimitExceededException') return new PermanentError(message, options);
  // The one routing on message text: Amplify sends some throttling as a 400
  // BadRequestException whose message reads "Rate exceeded" (see DESIGN.md).
  if (error.name === 'BadRequestException' && /rate exceeded/i.test(error.message)) {
    return new TransientError(message, options);
  }

  if (status !== undefined) {
    if (status === 429 || status >= 500) return new TransientError(message, options);

    return new PermanentError(message, options);
  }
  if (details.$fault === 'server') return new TransientError(message, options);

  return new PermanentError(message, options);
}

function isNotFound(error: unknown): boolean {
  return error instanceof AppError && error.code === 'NotFoundException';
}

function toAppInfo(app: App | undefined, operation: string): AppInfo {
  if (!app?.appId || !app.name || !app.defaultDomain) throw malformed(operation, 'an app');

  return {
    appId: app.appId,
    name: app.name,
    defaultDomain: app.defaultDomain,
    tags: { ...app.tags },
  };
}

function malformed(operation: string, what: string): PermanentError {
  return new PermanentError(`Amplify ${operation} answered without ${what}`, {
    service: 'amplify',
    code: 'MalformedResponse',
  });
}

function redact(text: string, secrets: readonly string[]): string {
  let result = text;
  for (const secret of secrets) {
    if (secret.length >= 4) result = result.split(secret).join('[redacted]');
  }

  return result;
}

/** `retry-after` in seconds or as an HTTP date, as `retryAfterMs`. */
function retryAfter(header: string | undefined): { retryAfterMs?: number } {
  if (!header) return {};

  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return { retryAfterMs: seconds * 1000 };

  const at = Date.parse(header);

  return Number.isNaN(at) ? {} : { retryAfterMs: Math.max(0, at - Date.now()) };
}
