import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NameTakenError, PermanentError, TransientError } from '../src/errors.js';
import { createGithubClient, type GithubSettings } from '../src/github.js';
import { startGithubEmulator, type GithubEmulator } from '../src/sandbox/github-emulator.js';

const TOKEN = 'ghp_test_token_0123456789';
const ORG = 'acme-sites';

let github: GithubEmulator;

beforeAll(async () => {
  github = await startGithubEmulator({ tokens: [TOKEN], orgs: [ORG] });
});

afterAll(async () => {
  await github.close();
});

beforeEach(() => {
  github.state.reset();
  github.state.templateReadyDelayMs = 0;
  github.faults.clear();
  github.requests.length = 0;
});

function client(overrides: Partial<GithubSettings> = {}) {
  return createGithubClient({
    token: TOKEN,
    baseUrl: github.url,
    org: ORG,
    timeoutMs: 2_000,
    ...overrides,
  });
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

function calls(method: string, pathPart: string): number {
  return github.requests.filter((r) => r.method === method && r.path.includes(pathPart)).length;
}

describe('createRepository without a template', () => {
  it('creates a private repository with a main branch carrying the description', async () => {
    const gh = client();

    const repo = await gh.createRepository({ name: 'site-one', description: 'run:abc' });

    expect(repo).toMatchObject({
      name: 'site-one',
      fullName: `${ORG}/site-one`,
      defaultBranch: 'main',
      description: 'run:abc',
    });
    expect(github.state.getRepo(ORG, 'site-one')?.private).toBe(true);
    expect(Object.keys(github.state.refs(ORG, 'site-one'))).toEqual(['refs/heads/main']);
  });

  it('returns the name GitHub stored when it rewrote invalid characters', async () => {
    const gh = client();

    const repo = await gh.createRepository({ name: 'my site!!v2', description: 'run:abc' });

    expect(repo.name).toBe('my-site-v2');
    expect(github.state.getRepo(ORG, 'my-site-v2')).toBeDefined();
    expect(github.state.getRepo(ORG, 'my site!!v2')).toBeUndefined();
  });

  it('fails with NameTakenError when the name is taken', async () => {
    github.state.addRepo(ORG, 'taken', { description: 'someone else' });
    const gh = client();

    const error = await failure(gh.createRepository({ name: 'taken', description: 'run:abc' }));

    expect(error).toBeInstanceOf(NameTakenError);
    expect(error).toMatchObject({ service: 'github', status: 422, retryable: false });
  });

  it('fails permanently, not as a taken name, when GitHub refuses the name itself', async () => {
    const gh = client();

    const error = await failure(gh.createRepository({ name: 'x'.repeat(101), description: '' }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).not.toBeInstanceOf(NameTakenError);
    expect(error).toMatchObject({ status: 422 });
  });

  it('fails permanently with 404 when the organisation does not exist', async () => {
    const gh = client({ org: 'nobody' });

    const error = await failure(gh.createRepository({ name: 'site', description: '' }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 404 });
  });
});

describe('createRepository from a template', () => {
  beforeEach(() => {
    github.state.addOrg('templates');
    github.state.addRepo('templates', 'starter', { withCommit: true });
  });

  it('answers null for the branch while the copy is in progress, then its sha', async () => {
    github.state.templateReadyDelayMs = 300;
    const gh = client({ template: 'templates/starter' });
    const repo = await gh.createRepository({ name: 'from-template', description: 'run:t' });

    const early = await gh.getBranchSha(repo.name, 'main');
    await new Promise((resolve) => setTimeout(resolve, 350));
    const later = await gh.getBranchSha(repo.name, 'main');

    expect(early).toBeNull();
    expect(github.requests.some((r) => r.status === 409)).toBe(true);
    expect(later).toMatch(/^[0-9a-f]{40}$/);
    expect(github.state.getRepo(ORG, 'from-template')?.template).toBe('templates/starter');
  });

  it('fails with NameTakenError though GitHub answers a taken name in a bare message', async () => {
    github.state.addRepo(ORG, 'taken', { description: 'someone else' });
    const gh = client({ template: 'templates/starter' });

    const error = await failure(gh.createRepository({ name: 'taken', description: 'run:t' }));

    expect(error).toBeInstanceOf(NameTakenError);
  });

  it('fails permanently with 404 when the template does not exist', async () => {
    const gh = client({ template: 'templates/missing' });

    const error = await failure(gh.createRepository({ name: 'site', description: '' }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 404 });
  });
});

describe('branches', () => {
  it('creates a branch once and treats the existing ref as done', async () => {
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();
    const sha = await gh.getBranchSha('site', 'main');

    await gh.ensureBranch('site', 'staging', sha!);
    await gh.ensureBranch('site', 'staging', sha!);

    expect(github.state.refs(ORG, 'site')['refs/heads/staging']).toBe(sha);
    expect(calls('POST', '/git/refs')).toBe(2);
  });

  it('reads a branch whose name holds a slash, which Octokit percent-encodes', async () => {
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();
    const sha = await gh.getBranchSha('site', 'main');
    await gh.ensureBranch('site', 'release/v1', sha!);

    const read = await gh.getBranchSha('site', 'release/v1');

    expect(read).toBe(sha);
  });

  it('answers null for a branch that does not exist', async () => {
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();

    const sha = await gh.getBranchSha('site', 'nope');

    expect(sha).toBeNull();
  });

  it('fails permanently when the commit does not exist', async () => {
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();

    const error = await failure(gh.ensureBranch('site', 'staging', 'f'.repeat(40)));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 422 });
  });
});

describe('grantTeam', () => {
  it('grants push by default', async () => {
    github.state.addTeam(ORG, 'site-admins');
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();

    await gh.grantTeam('site', 'site-admins');

    expect(github.state.teamPermission(ORG, 'site-admins', 'site')).toBe('push');
  });

  it('fails permanently with 404 when the team does not exist', async () => {
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();

    const error = await failure(gh.grantTeam('site', 'ghosts', 'admin'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 404 });
  });
});

describe('getRepository and deleteRepository', () => {
  it('answers null for a repository that does not exist', async () => {
    const gh = client();

    const repo = await gh.getRepository('absent');

    expect(repo).toBeNull();
  });

  it('deletes a repository and counts a second delete as done', async () => {
    github.state.addRepo(ORG, 'site', { withCommit: true });
    const gh = client();

    await gh.deleteRepository('site');
    await gh.deleteRepository('site');

    expect(github.state.getRepo(ORG, 'site')).toBeUndefined();
    expect(github.requests.filter((r) => r.method === 'DELETE').map((r) => r.status))
      .toEqual([204, 404]);
  });
});

describe('error classification', () => {
  it('fails permanently with 401 for a wrong token and never repeats the token', async () => {
    const wrong = 'ghp_wrong_token_9876543210';
    const gh = client({ token: wrong });

    const error = await failure(gh.getRepository('site'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ service: 'github', status: 401 });
    expect(JSON.stringify({ ...(error as object), message: (error as Error).message }))
      .not.toContain(wrong);
  });

  it('fails transiently on an injected 502', async () => {
    github.faults.add({ method: 'POST', path: `/orgs/${ORG}/repos`, status: 502, times: 1 });
    const gh = client();

    const error = await failure(gh.createRepository({ name: 'site', description: '' }));

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ status: 502, retryable: true });
    expect(github.state.getRepo(ORG, 'site')).toBeUndefined();
  });

  it('fails transiently with retryAfterMs on a 403 secondary rate limit', async () => {
    github.faults.add({
      path: `/orgs/${ORG}/repos`,
      status: 403,
      headers: { 'retry-after': '30', 'x-ratelimit-remaining': '0' },
    });
    const gh = client();

    const error = await failure(gh.createRepository({ name: 'site', description: '' }));

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ status: 403, retryAfterMs: 30_000 });
  });

  it('fails permanently on a 403 that is not a rate limit', async () => {
    github.faults.add({ path: `/orgs/${ORG}/repos`, status: 403, message: 'Must have admin' });
    const gh = client();

    const error = await failure(gh.createRepository({ name: 'site', description: '' }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 403 });
  });

  it('fails transiently when GitHub answers later than the timeout', async () => {
    github.faults.add({ path: '/repos/', delayMs: 1_000 });
    const gh = client({ timeoutMs: 100 });

    const error = await failure(gh.getRepository('site'));

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
  });

  it('fails transiently when the caller aborts', async () => {
    github.faults.add({ path: '/repos/', delayMs: 1_000 });
    const gh = client();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);

    const error = await failure(gh.getRepository('site', controller.signal));

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ code: 'ABORTED' });
  });

  it('fails transiently with the socket code when nothing listens', async () => {
    const closed = await startGithubEmulator({ tokens: [TOKEN], orgs: [ORG] });
    await closed.close();
    const gh = client({ baseUrl: closed.url });

    const error = await failure(gh.getRepository('site'));

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('the emulator at the wire', () => {
  it('answers 401 in GitHub shape without credentials', async () => {
    const response = await fetch(`${github.url}/repos/${ORG}/site`);

    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({
      message: 'Requires authentication',
      documentation_url: expect.any(String),
    });
  });

  it('answers 404 in GitHub shape for a route it does not serve', async () => {
    const response = await fetch(`${github.url}/user/repos`, {
      headers: { authorization: `token ${TOKEN}` },
    });

    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ message: 'Not Found' });
  });

  it('answers the org endpoint taken-name error with the validation shape', async () => {
    github.state.addRepo(ORG, 'taken');

    const response = await fetch(`${github.url}/orgs/${ORG}/repos`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'TAKEN' }),
    });

    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({
      message: 'Repository creation failed.',
      errors: [{ resource: 'Repository', code: 'custom', field: 'name' }],
    });
  });

  it('refuses team permissions GitHub does not know', async () => {
    github.state.addTeam(ORG, 'devs');
    github.state.addRepo(ORG, 'site');

    const response = await fetch(`${github.url}/orgs/${ORG}/teams/devs/repos/${ORG}/site`, {
      method: 'PUT',
      headers: { authorization: `token ${TOKEN}` },
      body: JSON.stringify({ permission: 'write' }),
    });

    expect(response.status).toBe(422);
    expect(github.state.teamPermission(ORG, 'devs', 'site')).toBeUndefined();
  });
});
