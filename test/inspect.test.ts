/**
 * Live inspection: opt-in through INSPECT_WS_URL, loopback only, and nothing secret leaves.
 * A real `ws` server on 127.0.0.1 receives what a running service streams.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { ConfigError, loadConfig } from '../src/config.js';
import { createInspectionSanitizer, startLiveInspector } from '../src/inspect.js';
import { silentLogger } from '../src/logger.js';
import { databaseKinds } from './helpers/database.js';
import { startHarness, type Harness } from './helpers/harness.js';

type Message = Record<string, unknown>;

interface Receiver {
  url: string;
  messages: Message[];
  connections: number;
  close(): Promise<void>;
}

/** A WebSocket server on loopback that keeps every JSON message it receives. */
async function startReceiver(port = 0): Promise<Receiver> {
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  await new Promise<void>((ready) => server.once('listening', () => ready()));
  const receiver: Receiver = {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    messages: [],
    connections: 0,
    close: () =>
      new Promise<void>((closed) => {
        for (const client of server.clients) client.terminate();
        server.close(() => closed());
      }),
  };
  server.on('connection', (socket) => {
    receiver.connections += 1;
    socket.on('message', (data) => {
      receiver.messages.push(JSON.parse(String(data)) as Message);
    });
  });

  return receiver;
}

/** A loopback port nobody listens on (taken, then given back). */
async function unusedPort(): Promise<number> {
  const receiver = await startReceiver();
  const port = Number(new URL(receiver.url).port);
  await receiver.close();

  return port;
}

async function eventually(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('the condition did not hold in time');
    await new Promise((next) => setTimeout(next, 10));
  }
}

/** Every object key anywhere in a JSON value. */
function keysOf(value: unknown, into = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) keysOf(item, into);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      into.add(key);
      keysOf(item, into);
    }
  }

  return into;
}

describe('the INSPECT_WS_URL setting', () => {
  const base = { FORMSG_SECRET_KEY: Buffer.alloc(32, 3).toString('base64') };

  const loopback = [
    'ws://127.0.0.1:9999',
    'ws://localhost:9999/inspect',
    'ws://[::1]:9999',
    'ws://127.3.2.1',
  ];

  it.each(loopback)('accepts %s', (url) => {
    const config = loadConfig({ ...base, INSPECT_WS_URL: url });

    expect(config.inspect.wsUrl).toBe(url);
  });

  it.each([
    'wss://127.0.0.1:9999',
    'http://127.0.0.1:9999',
    'ws://10.0.0.5:9999',
    'ws://169.254.169.254/',
    'ws://inspector.example.com',
    'ws://localhost.example.com:9999',
    'not a url',
  ])('refuses %s, naming the variable', (url) => {
    const load = () => loadConfig({ ...base, INSPECT_WS_URL: url });

    expect(load).toThrow(ConfigError);
    expect(load).toThrow(/INSPECT_WS_URL: must be a ws:\/\/ URL on a loopback host/);
  });

  it('is off when unset or empty', () => {
    const config = loadConfig({ ...base, INSPECT_WS_URL: '' });

    expect(config.inspect.wsUrl).toBeUndefined();
  });
});

describe('the inspection sanitizer', () => {
  const secret = 'ghp_live-secret-value-0123456789';

  it('drops the delivery, raw answers and credential-named keys, and scrubs secrets', () => {
    const sanitize = createInspectionSanitizer([secret]);
    const context = {
      runId: 'run-1',
      delivery: { signature: 't=1,s=abc', body: { encrypted: 'payload' } },
      responses: [{ question: 'Government E-mail', answer: 'officer@agency.gov.sg' }],
      request: { siteName: 'Example' },
      failure: { error: { name: 'GithubError', message: `Bad credentials for ${secret}` } },
      headers: { authorization: `token ${secret}`, accept: 'application/json' },
      nested: { githubAccessToken: secret, apiKey: 'k', kept: [1, 'two'] },
    };

    const clean = sanitize(context);

    expect(clean).toEqual({
      runId: 'run-1',
      request: { siteName: 'Example' },
      failure: { error: { name: 'GithubError', message: 'Bad credentials for [redacted]' } },
      headers: { accept: 'application/json' },
      nested: { kept: [1, 'two'] },
    });
    expect(context.delivery.signature).toBe('t=1,s=abc');
  });

  it('serialises what knows how, and cuts cycles and functions', () => {
    const sanitize = createInspectionSanitizer([]);
    const cyclic: Record<string, unknown> = { name: 'loop' };
    cyclic.self = cyclic;
    const value = {
      cyclic,
      when: new Date('2025-01-02T03:04:05.000Z'),
      tags: new Set(['a']),
      ref: { toJSON: () => ({ id: 'child' }), _parent: cyclic },
      send: () => undefined,
    };

    const clean = sanitize(value);

    expect(clean).toEqual({
      cyclic: { name: 'loop', self: '[Circular]' },
      when: '2025-01-02T03:04:05.000Z',
      tags: ['a'],
      ref: { id: 'child' },
    });
  });
});

describe('the live inspector on its own', () => {
  it('stops reconnecting once stopped, even while nothing listens', async () => {
    const port = await unusedPort();
    const inspector = startLiveInspector({
      url: `ws://127.0.0.1:${port}`,
      secrets: [],
      logger: silentLogger(),
      reconnectDelayMs: 10,
    });
    await new Promise((wait) => setTimeout(wait, 50));

    inspector.stop();
    const receiver = await startReceiver(port);
    await new Promise((wait) => setTimeout(wait, 100));
    await receiver.close();

    expect(receiver.connections).toBe(0);
  });

  it('connects again when the inspector comes up later', async () => {
    const port = await unusedPort();
    const inspector = startLiveInspector({
      url: `ws://127.0.0.1:${port}`,
      secrets: [],
      logger: silentLogger(),
      reconnectDelayMs: 10,
    });
    await new Promise((wait) => setTimeout(wait, 50));

    const receiver = await startReceiver(port);
    await eventually(() => receiver.connections === 1);
    inspector.stop();
    await receiver.close();

    expect(receiver.connections).toBe(1);
  });
});

describe.each(databaseKinds)('live inspection of a run on %s', (kind) => {
  let h: Harness | undefined;
  let receiver: Receiver | undefined;

  afterEach(async () => {
    await h?.close();
    await receiver?.close();
  });

  it('streams a run\'s inspection events to a loopback socket, nothing secret', async () => {
    receiver = await startReceiver();
    h = await startHarness(kind, { env: { INSPECT_WS_URL: receiver.url } });
    await h.addUser();
    const submission = h.build();
    const signature = /v1=([^,]+)/.exec(submission.headers['X-FormSG-Signature'])?.[1];
    const secrets = {
      formKey: h.keys.secretKey,
      githubToken: h.sandbox.githubToken,
      awsSecret: h.sandbox.awsCredentials.secretAccessKey,
      adminToken: 'test-admin-token-0123456789',
      signature: signature ?? 'missing',
      encrypted: submission.body.data.encryptedContent.slice(0, 40),
    };

    await h.post(submission);
    await h.settle();
    const isFinal = (message: Message) =>
      message.type === '@xstate.snapshot' &&
      (message.snapshot as { value?: unknown; status?: unknown }).value === 'done';
    await eventually(() => receiver?.messages.some(isFinal) ?? false);

    const messages = receiver.messages;
    const types = new Set(messages.map((message) => message.type));
    expect([...types].sort()).toEqual(['@xstate.actor', '@xstate.event', '@xstate.snapshot']);
    const final = messages.find(isFinal) as { snapshot: { context: Record<string, unknown> } };
    expect(final.snapshot.context).toMatchObject({
      submissionId: submission.submissionId,
      request: expect.objectContaining({ siteName: expect.any(String) }),
    });
    const keys = keysOf(messages);
    expect(keys.has('responses')).toBe(false);
    expect(keys.has('delivery')).toBe(false);
    const raw = JSON.stringify(messages);
    for (const [name, secret] of Object.entries(secrets)) {
      expect(raw.includes(secret), name).toBe(false);
    }
  });
});
