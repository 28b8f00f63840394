/**
 * The GitHub adapter: the few repository operations the orchestrator needs, each safe to repeat,
 * each bounded by a timeout, each failing with an AppError whose class says whether to retry.
 */
import { Octokit } from '@octokit/rest';
import {
  AppError,
  NameTakenError,
  NETWORK_ERROR_CODES,
  PermanentError,
  TransientError,
  isAbortError,
} from './errors.js';

export interface GithubSettings {
  token: string;
  /** API root, `https://api.github.com` or an emulator. */
  baseUrl: string;
  /** Organisation that owns the repositories. */
  org: string;
  /** `owner/repo` of a template to generate repositories from; empty repositories otherwise. */
  template?: string;
  /** Team slug the orchestrator grants access to; read by the caller. */
  team?: string;
  /** Upper bound of each HTTP call. */
  timeoutMs: number;
}

export interface RepoInfo {
  id: number;
  /** The name GitHub stored, which may differ from the one asked for. */
  name: string;
  fullName: string;
  htmlUrl: string;
  defaultBranch: string;
  description: string | null;
}

export type GithubPermission = 'pull' | 'push' | 'admin';

export interface GithubClient {
  readonly org: string;
  /**
   * Creates the repository in the organisation, from the template when one is set, private
   * either way. `description` carries the ownership marker, set atomically with the repository.
   * Fails with NameTakenError when a repository with this name exists already.
   */
  createRepository(args: {
    name: string;
    description: string;
    signal?: AbortSignal;
  }): Promise<RepoInfo>;
  /** The repository, or null when it does not exist. */
  getRepository(name: string, signal?: AbortSignal): Promise<RepoInfo | null>;
  /**
   * Sha of a branch head, or null when the branch does not exist or the repository is still
   * empty (404/409).
   */
  getBranchSha(repo: string, branch: string, signal?: AbortSignal): Promise<string | null>;
  /** Creates refs/heads/<branch> at sha; an existing ref counts as done. */
  ensureBranch(repo: string, branch: string, sha: string, signal?: AbortSignal): Promise<void>;
  /** Grants the team a permission ('push' by default). */
  grantTeam(
    repo: string,
    team: string,
    permission?: GithubPermission,
    signal?: AbortSignal,
  ): Promise<void>;
  /** Deletes the repo; already gone counts as done. */
  deleteRepository(name: string, signal?: AbortSignal): Promise<void>;
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** Builds the adapter over a real Octokit client. Nothing is sent until a method is called. */
export function createGithubClient(settings: GithubSettings): GithubClient {
  const { org, timeoutMs } = settings;
  const template = parseTemplate(settings.template);

  // Retries belong to the machine, which sees the waiting; the client must not retry behind it.
  const octokit = new Octokit({
    auth: settings.token,
    baseUrl: settings.baseUrl,
    request: { retries: 0 },
    log: silent,
  });

  /** Runs one call under the caller's signal and the timeout; failures become AppErrors. */
  async function call<T>(
    signal: AbortSignal | undefined,
    send: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;

    try {
      return await send(combined);
    } catch (error) {
      if (timeout.aborted) {
        throw new TransientError(`GitHub did not answer within ${timeoutMs} ms`, {
          service: 'github',
          code: 'TIMEOUT',
          cause: error,
        });
      }
      if (signal?.aborted) {
        throw new TransientError('the GitHub call was cancelled', {
          service: 'github',
          code: 'ABORTED',
          cause: error,
        });
      }

      throw classifyGithubError(error);
    }
  }

  async function getRepository(name: string, signal?: AbortSignal): Promise<RepoInfo | null> {
    try {
      const { data } = await call(signal, (s) =>
        octokit.rest.repos.get({ owner: org, repo: name, request: { signal: s } }));

      return toRepoInfo(data);
    } catch (error) {
      if (error instanceof AppError && error.status === 404) return null;
      throw error;
    }
  }

  async function getBranchSha(
    repo: string,
    branch: string,
    signal?: AbortSignal,
  ): Promise<string | null> {
    try {
      const { data } = await call(signal, (s) => octokit.rest.git.getRef({
        owner: org,
        repo,
        ref: `heads/${branch}`,
        request: { signal: s },
      }));

      return data.object.sha;
    } catch (error) {
      // 409: the repository has no commits yet (a template still being copied).
      if (error instanceof AppError && (error.status === 404 || error.status === 409)) {
        return null;
      }
      throw error;
    }
  }

  /**
   * A 422 from either creation endpoint may mean the name is taken, but only the org endpoint
   * says so in a structured way; the template endpoint answers with a bare message. Looking the
   * repository up settles it without reading the message.
   */
  async function explainCreationFailure(
    error: unknown,
    name: string,
    signal?: AbortSignal,
  ): Promise<unknown> {
    if (!(error instanceof AppError) || error.status !== 422) return error;

    const existing = await getRepository(name, signal).catch(() => undefined);
    if (existing) {
      return new NameTakenError(`a repository named ${name} already exists in ${org}`, {
        service: 'github',
        status: 422,
        cause: error.cause,
      });
    }
    if (existing === null && error instanceof NameTakenError) {
      return new PermanentError(`GitHub refused the repository name ${name}`, {
        service: 'github',
        status: 422,
        cause: error.cause,
      });
    }

    return error;
  }

  return {
    org,

    async createRepository({ name, description, signal }) {
      try {
        const { data } = await call(signal, (s) => template
          ? octokit.rest.repos.createUsingTemplate({
            template_owner: template.owner,
            template_repo: template.repo,
            owner: org,
            name,
            description,
            private: true,
            request: { signal: s },
          })
          : octokit.rest.repos.createInOrg({
            org,
            name,
            description,
            private: true,
            auto_init: true,
            request: { signal: s },
          }));

        return toRepoInfo(data);
      } catch (error) {
        throw await explainCreationFailure(error, name, signal);
      }
    },

    getRepository,

    getBranchSha,

    async ensureBranch(repo, branch, sha, signal) {
      try {
        await call(signal, (s) => octokit.rest.git.createRef({
          owner: org,
          repo,
          ref: `refs/heads/${branch}`,
          sha,
          request: { signal: s },
        }));
      } catch (error) {
        // 422 covers both "already exists" and "no such commit"; the ref itself tells them apart.
        if (error instanceof AppError && error.status === 422) {
          const existing = await getBranchSha(repo, branch, signal).catch(() => null);
          if (existing !== null) return;
        }
        throw error;
      }
    },

    async grantTeam(repo, team, permission = 'push', signal) {
      await call(signal, (s) => octokit.rest.teams.addOrUpdateRepoPermissionsInOrg({
        org,
        team_slug: team,
        owner: org,
        repo,
        permission,
        request: { signal: s },
      }));
    },

    async deleteRepository(name, signal) {
      try {
        await call(signal, (s) =>
          octokit.rest.repos.delete({ owner: org, repo: name, request: { signal: s } }));
      } catch (error) {
        if (error instanceof AppError && error.status === 404) return;
        throw error;
      }
    },
  };
}

type ResponseHeaders = Record<string, string | number | undefined>;

/** What Octokit's RequestError carries when GitHub answered. */
interface GithubResponseError {
  status: number;
  response: { status: number; headers: ResponseHeaders; data: unknown };
}

interface GithubErrorBody {
  message?: unknown;
  errors?: unknown;
}

/**
 * Turns anything a GitHub call threw into an AppError. Decided by status code, headers and
 * structured error fields, never by message text:
 * - 422 naming the `name` field: NameTakenError;
 * - 5xx, 429, and 403 carrying `retry-after` or `x-ratelimit-remaining: 0`: TransientError, with
 *   `retryAfterMs` when GitHub said how long to wait;
 * - connection failures, aborts and timeouts: TransientError;
 * - anything else (401, other 403s, 404, other 422s, unknown errors): PermanentError.
 */
export function classifyGithubError(error: unknown): AppError {
  if (error instanceof AppError) return error;

  if (!hasResponse(error)) return classifyWithoutResponse(error);

  const { status, headers, data } = error.response;
  const upstream = upstreamMessage(data);
  const base = { service: 'github' as const, status, cause: error };

  if (status === 422 && namesTheName(data)) {
    return new NameTakenError('the repository name is already taken', base);
  }

  const retryAfterMs = readRetryAfter(headers);
  const retry = retryAfterMs === undefined ? base : { ...base, retryAfterMs };
  if (status >= 500) {
    return new TransientError(withUpstream('GitHub answered with a server error', upstream), retry);
  }
  if (status === 429 || (status === 403 && isRateLimited(headers))) {
    return new TransientError(withUpstream('GitHub is limiting our request rate', upstream), retry);
  }

  return new PermanentError(withUpstream(describeStatus(status), upstream), base);
}

function classifyWithoutResponse(error: unknown): AppError {
  const chain = causeChain(error);

  if (chain.some(isAbortError)) {
    return new TransientError('the GitHub call was aborted or timed out', {
      service: 'github',
      code: 'TIMEOUT',
      cause: error,
    });
  }

  const code = chain.map(errorCode).find((c) => c !== undefined && isNetworkCode(c));
  if (code !== undefined) {
    return new TransientError('could not reach GitHub', { service: 'github', code, cause: error });
  }

  return new PermanentError('the GitHub call failed unexpectedly', {
    service: 'github',
    cause: error,
  });
}

function hasResponse(error: unknown): error is GithubResponseError {
  if (typeof error !== 'object' || error === null || !('response' in error)) return false;
  const { response } = error as { response: unknown };

  return typeof response === 'object' && response !== null &&
    typeof (response as { status?: unknown }).status === 'number';
}

function namesTheName(data: unknown): boolean {
  const errors = (data as GithubErrorBody | null)?.errors;
  if (!Array.isArray(errors)) return false;

  return errors.some((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null) return false;
    const { field, code } = entry as { field?: unknown; code?: unknown };

    return field === 'name' || code === 'already_exists';
  });
}

function isRateLimited(headers: ResponseHeaders): boolean {
  return headers['retry-after'] !== undefined || String(headers['x-ratelimit-remaining']) === '0';
}

/** `retry-after` in seconds, else the primary limit's reset time (epoch seconds). */
function readRetryAfter(headers: ResponseHeaders): number | undefined {
  const seconds = Number(headers['retry-after']);
  if (headers['retry-after'] !== undefined && Number.isFinite(seconds) && seconds >= 0) {
    return Math.round(seconds * 1000);
  }

  const reset = Number(headers['x-ratelimit-reset']);
  if (String(headers['x-ratelimit-remaining']) === '0' && Number.isFinite(reset) && reset > 0) {
    return Math.max(0, reset * 1000 - Date.now());
  }

  return undefined;
}

function describeStatus(status: number): string {
  switch (status) {
    case 401:
      return 'GitHub rejected the token';
    case 403:
      return 'GitHub refused the call: the token lacks a permission';
    case 404:
      return 'GitHub has no such organisation, repository, team or ref';
    case 409:
      return 'GitHub reported a conflict';
    case 422:
      return 'GitHub refused the request as invalid';
    default:
      return `GitHub answered with status ${status}`;
  }
}

function upstreamMessage(data: unknown): string | undefined {
  const message = (data as GithubErrorBody | null)?.message;

  return typeof message === 'string' && message.length > 0 ? message : undefined;
}

function withUpstream(message: string, upstream: string | undefined): string {
  return upstream === undefined ? message : `${message} (${upstream})`;
}

function causeChain(error: unknown): Error[] {
  const chain: Error[] = [];
  let current: unknown = error;
  while (current instanceof Error && !chain.includes(current) && chain.length < 8) {
    chain.push(current);
    current = current.cause;
  }

  return chain;
}

function errorCode(error: Error): string | undefined {
  const { code } = error as { code?: unknown };

  return typeof code === 'string' ? code : undefined;
}

function isNetworkCode(code: string): boolean {
  // undici names its own socket failures UND_ERR_*: closed sockets, connect timeouts.
  return NETWORK_ERROR_CODES.has(code) || code.startsWith('UND_ERR_');
}

function parseTemplate(template: string | undefined): { owner: string; repo: string } | undefined {
  if (!template) return undefined;

  const [owner, repo, ...rest] = template.split('/');
  if (!owner || !repo || rest.length > 0) {
    throw new PermanentError('the GitHub template must read "owner/repo"', { service: 'github' });
  }

  return { owner, repo };
}

interface RepoData {
  id: number;
  name: string;
  full_name: string;
  html_url: string;
  default_branch?: string;
  description: string | null;
}

function toRepoInfo(data: RepoData): RepoInfo {
  return {
    id: data.id,
    name: data.name,
    fullName: data.full_name,
    htmlUrl: data.html_url,
    defaultBranch: data.default_branch ?? 'main',
    description: data.description,
  };
}
