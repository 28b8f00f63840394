/**
 * A stateful stand-in for the parts of GitHub's REST API the orchestrator uses. The real
 * `@octokit/rest` client talks to it through `baseUrl`, so paths, bodies, status codes and error
 * shapes follow GitHub's, including its quirks: invalid repository names are rewritten rather
 * than refused, a repository generated from a template stays empty for a while, and a taken name
 * answers differently on the two creation endpoints.
 */
import { randomBytes } from 'node:crypto';
import { Hono, type Context } from 'hono';
import { delay, FaultInjector } from './faults.js';
import { serve } from './http-server.js';

export interface GithubEmulatorOptions {
  /** Tokens the emulator accepts, as `token <t>` or `Bearer <t>`. */
  tokens: string[];
  /** Organisations that exist from the start. */
  orgs?: string[];
  /** How long a repository generated from a template stays empty. Default 0. */
  templateReadyDelayMs?: number;
  /** Port to listen on; any free port when absent. */
  port?: number;
}

/** One recorded call, in arrival order. */
export interface RecordedRequest {
  method: string;
  /** Path as sent, percent-decoded, without the query string. */
  path: string;
  status: number;
}

export interface GithubEmulator {
  /** Base URL to hand to Octokit. */
  url: string;
  faults: FaultInjector;
  state: GithubState;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type TeamPermission = 'pull' | 'triage' | 'push' | 'maintain' | 'admin';

export interface RepoRecord {
  id: number;
  org: string;
  name: string;
  fullName: string;
  description: string | null;
  private: boolean;
  homepage: string | null;
  htmlUrl: string;
  defaultBranch: string;
  createdAt: string;
  /** `owner/name` of the template it was generated from. */
  template: string | null;
  /** Epoch ms before which the content is not there yet (templates being copied). */
  readyAt: number;
}

export interface TeamRecord {
  id: number;
  org: string;
  slug: string;
}

const TEAM_PERMISSIONS: readonly TeamPermission[] = ['pull', 'triage', 'push', 'maintain', 'admin'];

/** What the emulator holds, with the seeding and inspection helpers tests need. */
export class GithubState {
  /** How long generated repositories stay empty; tests may change it between calls. */
  templateReadyDelayMs: number;

  private readonly seedOrgs: string[];
  private orgs = new Map<string, string>();
  private repos = new Map<string, RepoRecord>();
  private refsByRepo = new Map<string, Map<string, string>>();
  private commits = new Map<string, Set<string>>();
  private teams = new Map<string, TeamRecord>();
  private permissions = new Map<string, TeamPermission>();
  private nextRepoId = 100_001;
  private nextTeamId = 501;

  constructor(orgs: string[] = [], templateReadyDelayMs = 0) {
    this.seedOrgs = [...orgs];
    this.templateReadyDelayMs = templateReadyDelayMs;
    this.reset();
  }

  /** Forgets everything except the organisations given at start-up. */
  reset(): void {
    this.orgs.clear();
    this.repos.clear();
    this.refsByRepo.clear();
    this.commits.clear();
    this.teams.clear();
    this.permissions.clear();

    for (const org of this.seedOrgs) this.addOrg(org);
  }

  addOrg(org: string): void {
    this.orgs.set(org.toLowerCase(), org);
  }

  /** The organisation's login as it was created, or undefined. */
  findOrg(org: string): string | undefined {
    return this.orgs.get(org.toLowerCase());
  }

  addTeam(org: string, slug: string): TeamRecord {
    const login = this.requireOrg(org);
    const team = { id: this.nextTeamId++, org: login, slug };
    this.teams.set(teamKey(login, slug), team);

    return team;
  }

  findTeam(org: string, slug: string): TeamRecord | undefined {
    return this.teams.get(teamKey(org, slug));
  }

  /**
   * Seeds a repository. With `withCommit`, it has a `main` branch at one commit; otherwise it is
   * empty, like a repository created without `auto_init`.
   */
  addRepo(
    org: string,
    name: string,
    options: { description?: string; withCommit?: boolean; private?: boolean } = {},
  ): RepoRecord {
    const repo = this.createRepo(this.requireOrg(org), name, {
      description: options.description ?? null,
      private: options.private ?? false,
      homepage: null,
      template: null,
      readyAt: 0,
    });

    if (options.withCommit) this.setRef(repo, 'refs/heads/main', this.newCommit(repo));

    return repo;
  }

  listRepos(org: string): RepoRecord[] {
    const prefix = `${org.toLowerCase()}/`;

    return [...this.repos.entries()]
      .filter(([key]) => key.startsWith(prefix))
      .map(([, repo]) => repo);
  }

  /** Looks a repository up the way GitHub does: case-insensitively. */
  getRepo(org: string, name: string): RepoRecord | undefined {
    return this.repos.get(repoKey(org, name));
  }

  /** The repository's refs, full name (`refs/heads/main`) to sha. */
  refs(org: string, name: string): Record<string, string> {
    return Object.fromEntries(this.refsByRepo.get(repoKey(org, name)) ?? []);
  }

  teamPermission(org: string, slug: string, repoName: string): TeamPermission | undefined {
    return this.permissions.get(`${teamKey(org, slug)}:${repoName.toLowerCase()}`);
  }

  /** @internal Used by the HTTP layer. */
  createRepo(
    org: string,
    name: string,
    fields: Pick<RepoRecord, 'description' | 'private' | 'homepage' | 'template' | 'readyAt'>,
  ): RepoRecord {
    const repo: RepoRecord = {
      id: this.nextRepoId++,
      org,
      name,
      fullName: `${org}/${name}`,
      htmlUrl: `https://github.com/${org}/${name}`,
      defaultBranch: 'main',
      createdAt: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      ...fields,
    };
    this.repos.set(repoKey(org, name), repo);
    this.refsByRepo.set(repoKey(org, name), new Map());
    this.commits.set(repoKey(org, name), new Set());

    return repo;
  }

  /** @internal */
  deleteRepo(repo: RepoRecord): void {
    const key = repoKey(repo.org, repo.name);
    this.repos.delete(key);
    this.refsByRepo.delete(key);
    this.commits.delete(key);

    for (const permissionKey of [...this.permissions.keys()]) {
      if (permissionKey.startsWith(`${repo.org.toLowerCase()}/`) &&
        permissionKey.endsWith(`:${repo.name.toLowerCase()}`)) {
        this.permissions.delete(permissionKey);
      }
    }
  }

  /** @internal True while a generated repository's content is still being copied. */
  isEmpty(repo: RepoRecord): boolean {
    return Date.now() < repo.readyAt || this.refMap(repo).size === 0;
  }

  /** @internal */
  getRef(repo: RepoRecord, ref: string): string | undefined {
    return this.refMap(repo).get(ref);
  }

  /** @internal */
  setRef(repo: RepoRecord, ref: string, sha: string): void {
    this.refMap(repo).set(ref, sha);
  }

  /** @internal */
  hasCommit(repo: RepoRecord, sha: string): boolean {
    return this.commits.get(repoKey(repo.org, repo.name))?.has(sha) ?? false;
  }

  /** @internal Records a fresh commit in the repository and returns its sha. */
  newCommit(repo: RepoRecord): string {
    const sha = randomBytes(20).toString('hex');
    this.commits.get(repoKey(repo.org, repo.name))?.add(sha);

    return sha;
  }

  /** @internal */
  grant(team: TeamRecord, repo: RepoRecord, permission: TeamPermission): void {
    this.permissions.set(`${teamKey(team.org, team.slug)}:${repo.name.toLowerCase()}`, permission);
  }

  private refMap(repo: RepoRecord): Map<string, string> {
    const key = repoKey(repo.org, repo.name);
    let refs = this.refsByRepo.get(key);
    if (!refs) {
      refs = new Map();
      this.refsByRepo.set(key, refs);
    }

    return refs;
  }

  private requireOrg(org: string): string {
    const login = this.findOrg(org);
    if (!login) throw new Error(`unknown organisation ${org}: call addOrg first`);

    return login;
  }
}

/** Starts the emulator on 127.0.0.1. */
export async function startGithubEmulator(opts: GithubEmulatorOptions): Promise<GithubEmulator> {
  const state = new GithubState(opts.orgs, opts.templateReadyDelayMs ?? 0);
  const faults = new FaultInjector();
  const requests: RecordedRequest[] = [];

  const app = createGithubApp({ tokens: new Set(opts.tokens), state, faults, requests });
  const server = await serve(app, opts.port === undefined ? {} : { port: opts.port });

  return { url: server.url, faults, state, requests, close: server.close };
}

interface AppDeps {
  tokens: Set<string>;
  state: GithubState;
  faults: FaultInjector;
  requests: RecordedRequest[];
}

const DOCS = 'https://docs.github.com/rest';
const NAME_MAX_LENGTH = 100;

function createGithubApp({ tokens, state, faults, requests }: AppDeps): Hono {
  const app = new Hono();

  app.use(async (c, next) => {
    const path = requestPath(c.req.url);
    try {
      await next();
    } finally {
      requests.push({ method: c.req.method, path, status: c.res.status });
    }
  });

  app.use(async (c, next) => {
    const hit = faults.match(c.req.method, requestPath(c.req.url));
    if (!hit) return next();

    const { rule } = hit;
    if (rule.delayMs) {
      try {
        await delay(rule.delayMs, c.req.raw.signal);
      } catch {
        // The client gave up; nobody reads this answer, the record keeps it apart.
        c.res = new Response(null, { status: 499 });

        return c.res;
      }
    }
    if (rule.status === undefined) return next();

    const message = rule.message ?? defaultFaultMessage(rule.status);

    return fail(c, rule.status, message, { headers: rule.headers });
  });

  app.use(async (c, next) => {
    const token = bearerToken(c.req.header('authorization'));
    if (token === undefined) return fail(c, 401, 'Requires authentication');
    if (!tokens.has(token)) return fail(c, 401, 'Bad credentials');

    return next();
  });

  app.post('/orgs/:org/repos', async (c) => {
    const org = state.findOrg(c.req.param('org'));
    if (!org) return fail(c, 404, 'Not Found');

    const body = await readBody(c);
    if (!body) return fail(c, 400, 'Problems parsing JSON');

    const name = checkName(body.name);
    if (typeof name !== 'string') return creationFailed(c, name);
    if (state.getRepo(org, name)) {
      return creationFailed(c, { code: 'custom', message: 'name already exists on this account' });
    }

    const repo = state.createRepo(org, name, {
      description: stringOrNull(body.description),
      private: body.private === true,
      homepage: stringOrNull(body.homepage),
      template: null,
      readyAt: 0,
    });
    if (body.auto_init === true) state.setRef(repo, 'refs/heads/main', state.newCommit(repo));

    return c.json(repoJson(repo), 201);
  });

  app.post('/repos/:owner/:repo/generate', async (c) => {
    const template = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!template) return fail(c, 404, 'Not Found');

    const body = await readBody(c);
    if (!body) return fail(c, 400, 'Problems parsing JSON');

    const owner = typeof body.owner === 'string' ? state.findOrg(body.owner) : template.org;
    if (!owner) return fail(c, 404, 'Not Found');

    // GitHub answers a taken name here with a bare message, unlike POST /orgs/{org}/repos.
    const name = checkName(body.name);
    if (typeof name !== 'string') return creationFailed(c, name);
    if (state.getRepo(owner, name)) {
      return fail(c, 422, 'Could not clone: Name already exists on this account');
    }

    const repo = state.createRepo(owner, name, {
      description: stringOrNull(body.description),
      private: body.private === true,
      homepage: null,
      template: template.fullName,
      readyAt: Date.now() + state.templateReadyDelayMs,
    });
    copyBranches(state, template, repo, body.include_all_branches === true);

    return c.json(repoJson(repo), 201);
  });

  app.get('/repos/:owner/:repo', (c) => {
    const repo = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!repo) return fail(c, 404, 'Not Found');

    return c.json(repoJson(repo));
  });

  app.delete('/repos/:owner/:repo', (c) => {
    const repo = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!repo) return fail(c, 404, 'Not Found');

    state.deleteRepo(repo);

    return c.body(null, 204);
  });

  // Octokit sends `heads%2Fstaging`; Hono decodes the parameter.
  app.get('/repos/:owner/:repo/git/ref/:ref{.+}', (c) => {
    const repo = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!repo) return fail(c, 404, 'Not Found');
    if (state.isEmpty(repo)) return fail(c, 409, 'Git Repository is empty.');

    const ref = `refs/${c.req.param('ref')}`;
    const sha = state.getRef(repo, ref);
    if (!sha) return fail(c, 404, 'Not Found');

    return c.json(refJson(c, repo, ref, sha));
  });

  app.post('/repos/:owner/:repo/git/refs', async (c) => {
    const repo = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!repo) return fail(c, 404, 'Not Found');

    const body = await readBody(c);
    if (!body) return fail(c, 400, 'Problems parsing JSON');
    if (state.isEmpty(repo)) return fail(c, 409, 'Git Repository is empty.');

    const { ref, sha } = body;
    if (typeof ref !== 'string' || !/^refs\/[^/]+\/.+/.test(ref)) {
      return fail(c, 422, "Reference name must start with 'refs/' and have at least two slashes.");
    }
    if (typeof sha !== 'string' || !state.hasCommit(repo, sha)) {
      return fail(c, 422, 'Object does not exist');
    }
    if (state.getRef(repo, ref)) return fail(c, 422, 'Reference already exists');

    state.setRef(repo, ref, sha);

    return c.json(refJson(c, repo, ref, sha), 201);
  });

  app.get('/repos/:owner/:repo/branches/:branch{.+}', (c) => {
    const repo = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!repo) return fail(c, 404, 'Not Found');

    const branch = c.req.param('branch');
    const sha = state.isEmpty(repo) ? undefined : state.getRef(repo, `refs/heads/${branch}`);
    if (!sha) return fail(c, 404, 'Branch not found');

    return c.json({ name: branch, commit: { sha }, protected: false });
  });

  app.get('/orgs/:org/teams/:slug', (c) => {
    const team = state.findTeam(c.req.param('org'), c.req.param('slug'));
    if (!team) return fail(c, 404, 'Not Found');

    return c.json(teamJson(team));
  });

  app.put('/orgs/:org/teams/:slug/repos/:owner/:repo', async (c) => {
    const team = state.findTeam(c.req.param('org'), c.req.param('slug'));
    const repo = state.getRepo(c.req.param('owner'), c.req.param('repo'));
    if (!team || !repo) return fail(c, 404, 'Not Found');

    const body = (await readBody(c)) ?? {};
    const permission = body.permission ?? 'push';
    if (!isTeamPermission(permission)) {
      return fail(c, 422, 'Validation Failed', {
        errors: [{ resource: 'TeamRepository', code: 'invalid', field: 'permission' }],
      });
    }
    if (repo.org !== team.org) {
      return fail(c, 422, 'Repository must be owned by organization');
    }

    state.grant(team, repo, permission);

    return c.body(null, 204);
  });

  app.notFound((c) => fail(c, 404, 'Not Found'));

  return app;
}

type Body = Record<string, unknown>;

interface NameProblem {
  code: string;
  message?: string;
}

/** GitHub keeps letters, digits, `-`, `_` and `.`, and turns every other run into one `-`. */
function checkName(raw: unknown): string | NameProblem {
  if (typeof raw !== 'string' || raw.length === 0) return { code: 'missing_field' };

  const name = raw.replace(/[^A-Za-z0-9._-]+/g, '-');
  if (name === '.' || name === '..') {
    return { code: 'custom', message: 'name is a reserved word' };
  }
  if (name.length > NAME_MAX_LENGTH) {
    return { code: 'custom', message: 'name is too long (maximum is 100 characters)' };
  }

  return name;
}

function copyBranches(
  state: GithubState,
  template: RepoRecord,
  repo: RepoRecord,
  allBranches: boolean,
): void {
  const refs = Object.keys(state.refs(template.org, template.name));
  const defaultRef = `refs/heads/${template.defaultBranch}`;
  const wanted = allBranches ? refs : refs.filter((ref) => ref === defaultRef);

  // GitHub writes fresh commits into the new repository, so its shas differ from the template's.
  for (const ref of wanted) state.setRef(repo, ref, state.newCommit(repo));
}

function creationFailed(c: Context, problem: NameProblem): Response {
  const error: Body = { resource: 'Repository', code: problem.code, field: 'name' };
  if (problem.message) error.message = problem.message;

  return fail(c, 422, 'Repository creation failed.', { errors: [error] });
}

function fail(
  c: Context,
  status: number,
  message: string,
  extra: { errors?: Body[]; headers?: Record<string, string> | undefined } = {},
): Response {
  const body: Body = { message };
  if (extra.errors) body.errors = extra.errors;
  body.documentation_url = DOCS;
  body.status = String(status);

  const headers = { 'content-type': 'application/json; charset=utf-8', ...extra.headers };
  c.res = new Response(JSON.stringify(body), { status, headers });

  return c.res;
}

function defaultFaultMessage(status: number): string {
  if (status === 403) return 'You have exceeded a secondary rate limit.';
  if (status === 429) return 'API rate limit exceeded.';
  if (status >= 500) return 'Server Error';

  return 'Injected fault';
}

function requestPath(url: string): string {
  const { pathname } = new URL(url);
  try {
    return decodeURIComponent(pathname);
  } catch {
    return pathname;
  }
}

function bearerToken(header: string | undefined): string | undefined {
  const match = header?.match(/^(?:token|bearer)\s+(\S+)\s*$/i);

  return match?.[1];
}

async function readBody(c: Context): Promise<Body | undefined> {
  const text = await c.req.text();
  if (text.trim() === '') return {};

  try {
    const parsed: unknown = JSON.parse(text);
    const isObject = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);

    return isObject ? (parsed as Body) : undefined;
  } catch {
    return undefined;
  }
}

function stringOrNull(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function isTeamPermission(value: unknown): value is TeamPermission {
  return TEAM_PERMISSIONS.includes(value as TeamPermission);
}

function repoJson(repo: RepoRecord): Body {
  return {
    id: repo.id,
    node_id: Buffer.from(`Repository${repo.id}`).toString('base64'),
    name: repo.name,
    full_name: repo.fullName,
    private: repo.private,
    visibility: repo.private ? 'private' : 'public',
    owner: { login: repo.org, type: 'Organization' },
    html_url: repo.htmlUrl,
    description: repo.description,
    homepage: repo.homepage,
    fork: false,
    default_branch: repo.defaultBranch,
    created_at: repo.createdAt,
    updated_at: repo.createdAt,
    pushed_at: repo.createdAt,
    is_template: false,
    template_repository: repo.template ? { full_name: repo.template } : null,
  };
}

function refJson(c: Context, repo: RepoRecord, ref: string, sha: string): Body {
  const api = new URL(c.req.url).origin;

  return {
    ref,
    node_id: Buffer.from(`Ref${repo.id}:${ref}`).toString('base64'),
    url: `${api}/repos/${repo.fullName}/git/${ref}`,
    object: { type: 'commit', sha, url: `${api}/repos/${repo.fullName}/git/commits/${sha}` },
  };
}

function teamJson(team: TeamRecord): Body {
  return {
    id: team.id,
    node_id: Buffer.from(`Team${team.id}`).toString('base64'),
    name: team.slug,
    slug: team.slug,
    privacy: 'closed',
    permission: 'pull',
    organization: { login: team.org },
  };
}

function repoKey(org: string, name: string): string {
  return `${org.toLowerCase()}/${name.toLowerCase()}`;
}

function teamKey(org: string, slug: string): string {
  return `${org.toLowerCase()}/${slug.toLowerCase()}`;
}
