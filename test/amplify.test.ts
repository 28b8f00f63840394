import { createServer } from 'node:net';
import {
  AmplifyClient,
  CreateAppCommand,
  GetAppCommand,
  ListWebhooksCommand,
} from '@aws-sdk/client-amplify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAmplifyClient, type AmplifySettings } from '../src/amplify.js';
import { AppError, PermanentError, TransientError } from '../src/errors.js';
import { startAmplifyEmulator, type AmplifyEmulator } from '../src/sandbox/amplify-emulator.js';

const REGION = 'ap-southeast-1';
const CREDENTIALS = {
  accessKeyId: 'AKIDEMULATORTEST01',
  secretAccessKey: 'emulator-secret-key-xyz',
};
const GITHUB_TOKEN = 'ghp_amplify_test_token_42';
const REPOSITORY = 'https://github.com/acme-sites/site-one';

let amplify: AmplifyEmulator;

beforeAll(async () => {
  amplify = await startAmplifyEmulator({ credentials: [CREDENTIALS], region: REGION });
});

afterAll(async () => {
  await amplify.close();
});

beforeEach(() => {
  amplify.state.reset();
  amplify.faults.clear();
  amplify.requests.length = 0;
});

function gateway(overrides: Partial<AmplifySettings> = {}) {
  return createAmplifyClient({
    region: REGION,
    endpoint: amplify.url,
    credentials: CREDENTIALS,
    timeoutMs: 2_000,
    ...overrides,
  });
}

function sdk() {
  return new AmplifyClient({
    region: REGION,
    endpoint: amplify.url,
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
}

function createSite(tags: Record<string, string> = { 'site-orchestrator:run': 'run-1' }) {
  return gateway().createApp({
    name: 'site-one',
    repository: REPOSITORY,
    accessToken: GITHUB_TOKEN,
    tags,
  });
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

function calls(operation: string): Array<{ status: number }> {
  return amplify.requests.filter((request) => request.operation === operation);
}

describe('createApp', () => {
  it('creates an app carrying its tags and answers with its id and domain', async () => {
    const tags = { 'site-orchestrator:run': 'run-1', site: 'site-one' };

    const app = await createSite(tags);

    expect(app.appId).toMatch(/^d[a-z0-9]{13}$/);
    expect(app).toEqual({
      appId: app.appId,
      name: 'site-one',
      defaultDomain: `${app.appId}.amplifyapp.com`,
      tags,
    });
    expect(amplify.state.getApp(app.appId)).toMatchObject({
      repository: REPOSITORY,
      tags,
      repositoryCloneMethod: 'TOKEN',
    });
  });

  it('never echoes or keeps the access token', async () => {
    const client = sdk();

    const created = await client.send(
      new CreateAppCommand({ name: 'site-one', repository: REPOSITORY, accessToken: GITHUB_TOKEN }),
    );
    const fetched = await client.send(new GetAppCommand({ appId: created.app?.appId }));

    expect(created.app?.appId).toBeDefined();
    expect(JSON.stringify(created)).not.toContain(GITHUB_TOKEN);
    expect(JSON.stringify(fetched)).not.toContain(GITHUB_TOKEN);
    expect(JSON.stringify(amplify.state.listApps())).not.toContain(GITHUB_TOKEN);
  });

  it('refuses an app without a name as a permanent BadRequestException', async () => {
    const call = gateway().createApp({
      name: '',
      repository: REPOSITORY,
      accessToken: GITHUB_TOKEN,
      tags: {},
    });

    const error = await failure(call);

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ service: 'amplify', status: 400, code: 'BadRequestException' });
    expect(amplify.state.listApps()).toHaveLength(0);
  });

  it('keeps the access token out of the error when the service echoes it', async () => {
    amplify.faults.add({
      path: '/apps',
      status: 400,
      errorType: 'BadRequestException',
      message: `Token ${GITHUB_TOKEN} cannot read the repository`,
    });

    const error = await failure(createSite());

    expect(error).toBeInstanceOf(PermanentError);
    expect(error.message).not.toContain(GITHUB_TOKEN);
    expect(error.message).toContain('[redacted]');
  });
});

describe('getApp', () => {
  it('answers null for an app that does not exist', async () => {
    const app = await gateway().getApp('d0000000000000');

    expect(app).toBeNull();
    expect(calls('GetApp')).toEqual([expect.objectContaining({ status: 404 })]);
  });
});

describe('findAppsByTags', () => {
  it('finds only the apps carrying every tag, following nextToken across pages', async () => {
    for (let i = 0; i < 120; i += 1) {
      amplify.state.addApp({ name: `other-${i}`, tags: { 'site-orchestrator:run': `run-${i}x` } });
    }
    amplify.state.addApp({ name: 'half-match', tags: { 'site-orchestrator:run': 'run-7' } });
    const mine = await createSite({ 'site-orchestrator:run': 'run-7', site: 'site-one' });

    const found = await gateway().findAppsByTags({
      'site-orchestrator:run': 'run-7',
      site: 'site-one',
    });

    expect(found).toEqual([mine]);
    expect(calls('ListApps')).toHaveLength(2);
  });

  it('finds nothing when no app carries the tags', async () => {
    amplify.state.addApp({ name: 'site-one', tags: { 'site-orchestrator:run': 'someone-else' } });

    const found = await gateway().findAppsByTags({ 'site-orchestrator:run': 'run-1' });

    expect(found).toEqual([]);
  });

  it('refuses an empty tag filter, which would match every app', async () => {
    amplify.state.addApp({ name: 'site-one' });

    const error = await failure(gateway().findAppsByTags({}));

    expect(error).toBeInstanceOf(PermanentError);
    expect(calls('ListApps')).toHaveLength(0);
  });
});

describe('ensureBranch', () => {
  it('creates the branch once and counts an existing branch as done', async () => {
    const app = await createSite();
    const amp = gateway();

    await amp.ensureBranch(app.appId, 'master', 'PRODUCTION');
    await amp.ensureBranch(app.appId, 'master', 'PRODUCTION');

    expect(amplify.state.branches(app.appId)).toEqual([
      expect.objectContaining({ branchName: 'master', stage: 'PRODUCTION' }),
    ]);
    expect(calls('CreateBranch').map((call) => call.status)).toEqual([200, 400]);
    expect(calls('GetBranch').map((call) => call.status)).toEqual([200]);
  });

  it('reports a refused branch that does not exist as the refusal', async () => {
    const app = await createSite();
    amplify.faults.add({ path: '/branches', method: 'POST', status: 400, message: 'Bad stage' });

    const error = await failure(gateway().ensureBranch(app.appId, 'staging', 'DEVELOPMENT'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 400, code: 'BadRequestException' });
    expect(calls('GetBranch').map((call) => call.status)).toEqual([404]);
  });

  it('reports a branch on a missing app as a permanent NotFoundException', async () => {
    const error = await failure(gateway().ensureBranch('d0000000000000', 'master', 'PRODUCTION'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 404, code: 'NotFoundException' });
  });
});

describe('ensureReleaseJob', () => {
  it('starts one release job however often it is asked', async () => {
    const app = await createSite();
    const amp = gateway();
    await amp.ensureBranch(app.appId, 'staging', 'DEVELOPMENT');

    const first = await amp.ensureReleaseJob(app.appId, 'staging');
    const second = await amp.ensureReleaseJob(app.appId, 'staging');

    expect(second).toBe(first);
    expect(amplify.state.jobs(app.appId, 'staging')).toEqual([
      expect.objectContaining({ jobId: first, jobType: 'RELEASE', status: 'PENDING' }),
    ]);
    expect(calls('StartJob')).toHaveLength(1);
  });

  it('reports a job on a missing branch as a permanent NotFoundException', async () => {
    const app = await createSite();

    const error = await failure(gateway().ensureReleaseJob(app.appId, 'nowhere'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 404, code: 'NotFoundException' });
  });
});

describe('deleteApp', () => {
  it('deletes the app with its branches and takes an app already gone calmly', async () => {
    const app = await createSite();
    const amp = gateway();
    await amp.ensureBranch(app.appId, 'master', 'PRODUCTION');
    await amp.ensureReleaseJob(app.appId, 'master');

    const first = await amp.deleteApp(app.appId);
    const second = await amp.deleteApp(app.appId);

    expect([first, second]).toEqual([true, false]);
    expect(await amp.getApp(app.appId)).toBeNull();
    expect(amplify.state.listApps()).toEqual([]);
    expect(amplify.state.branches(app.appId)).toEqual([]);
    expect(calls('DeleteApp').map((call) => call.status)).toEqual([200, 404]);
  });
});

describe('authentication', () => {
  it('refuses an unsigned request with MissingAuthenticationTokenException', async () => {
    const response = await fetch(`${amplify.url}/apps`);

    expect(response.status).toBe(403);
    expect(response.headers.get('x-amzn-errortype')).toMatch(
      /^MissingAuthenticationTokenException:/,
    );
    expect(await response.json()).toEqual({ message: 'Missing Authentication Token' });
  });

  it('refuses an unknown access key as a permanent UnrecognizedClientException', async () => {
    const amp = gateway({
      credentials: { accessKeyId: 'AKIDSTRANGER', secretAccessKey: 'stranger-secret-1' },
    });

    const error = await failure(amp.findAppsByTags({ 'site-orchestrator:run': 'run-1' }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 403, code: 'UnrecognizedClientException' });
    expect(error.message).not.toContain('stranger-secret-1');
  });

  it('refuses a signature made with the wrong secret as permanent', async () => {
    const amp = gateway({
      credentials: { accessKeyId: CREDENTIALS.accessKeyId, secretAccessKey: 'not-the-secret' },
    });

    const error = await failure(amp.getApp('d0000000000000'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 403, code: 'InvalidSignatureException' });
    expect(amplify.state.listApps()).toEqual([]);
  });

  it('refuses a signature scoped to another region', async () => {
    const amp = gateway({ region: 'us-east-1' });

    const error = await failure(amp.getApp('d0000000000000'));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ status: 403, code: 'InvalidSignatureException' });
  });

  it('refuses a signed request whose body was changed after signing', async () => {
    const client = sdk();
    client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body?: unknown };
        request.body = JSON.stringify({ name: 'tampered' });

        return next(args);
      },
      { step: 'finalizeRequest', priority: 'low' },
    );

    const call = client.send(new CreateAppCommand({ name: 'site-one' }));

    await expect(call).rejects.toMatchObject({ name: 'InvalidSignatureException' });
    expect(amplify.state.listApps()).toEqual([]);
  });
});

describe('errors', () => {
  it.each([
    ['InternalFailureException (500)', 500, 'InternalFailureException', 'Internal failure'],
    ['DependentServiceFailureException (503)', 503, 'DependentServiceFailureException', 'Down'],
    ['TooManyRequestsException (429)', 429, 'TooManyRequestsException', 'Too many requests'],
    ['BadRequestException "Rate exceeded" (400)', 400, 'BadRequestException', 'Rate exceeded'],
  ] as const)('reports %s as transient', async (_case, status, errorType, message) => {
    const rule = { status, errorType, message };
    amplify.faults.add({ path: '/apps', ...rule });

    const error = await failure(createSite());

    expect(error).toBeInstanceOf(TransientError);
    expect(error).toMatchObject({ service: 'amplify', status: rule.status, code: rule.errorType });
  });

  it.each([
    ['any other BadRequestException (400)', 400, 'BadRequestException', 'Invalid platform'],
    ['UnauthorizedException (401)', 401, 'UnauthorizedException', 'Not authorized'],
    ['NotFoundException (404)', 404, 'NotFoundException', 'Not found'],
    ['LimitExceededException (429), a quota', 429, 'LimitExceededException', 'App limit'],
  ] as const)('reports %s as permanent', async (_case, status, errorType, message) => {
    const rule = { status, errorType, message };
    amplify.faults.add({ path: '/apps', ...rule });

    const error = await failure(createSite());

    expect(error).toBeInstanceOf(PermanentError);
    expect(error).toMatchObject({ service: 'amplify', status: rule.status, code: rule.errorType });
  });

  it('makes exactly one attempt, leaving retries to the machine', async () => {
    amplify.faults.add({ path: '/apps', status: 500 });

    await failure(createSite());

    expect(calls('CreateApp')).toHaveLength(1);
  });

  it('passes on how long a throttled call asked us to wait', async () => {
    amplify.faults.add({
      path: '/apps',
      status: 429,
      errorType: 'TooManyRequestsException',
      headers: { 'retry-after': '3' },
    });

    const error = await failure(createSite());

    expect(error).toBeInstanceOf(TransientError);
    expect(error.retryAfterMs).toBe(3_000);
  });

  it('reports a call answered after timeoutMs as a transient timeout', async () => {
    amplify.faults.add({ path: '/apps', delayMs: 1_500 });
    const started = Date.now();

    const error = await failure(gateway({ timeoutMs: 150 }).getApp('d0000000000000'));

    expect(error).toBeInstanceOf(TransientError);
    expect(error.code).toBe('TimeoutError');
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('reports a call aborted by the caller as transient', async () => {
    amplify.faults.add({ path: '/apps', delayMs: 1_500 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);

    const error = await failure(gateway().getApp('d0000000000000', controller.signal));

    expect(error).toBeInstanceOf(TransientError);
    expect(error.code).toBe('AbortError');
  });

  it('reports a refused connection as transient', async () => {
    const port = await freePort();

    const error = await failure(
      gateway({ endpoint: `http://127.0.0.1:${port}` }).getApp('d0000000000000'),
    );

    expect(error).toBeInstanceOf(TransientError);
    expect(error.code).toBe('ECONNREFUSED');
  });
});

describe('emulator', () => {
  it('answers an operation it does not emulate with UnknownOperationException', async () => {
    const call = sdk().send(new ListWebhooksCommand({ appId: 'd0000000000000' }));

    await expect(call).rejects.toMatchObject({
      name: 'UnknownOperationException',
      $metadata: { httpStatusCode: 404 },
    });
  });
});

/** A loopback port that nothing listens on (bound by the OS, then released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
