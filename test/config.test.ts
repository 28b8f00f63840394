import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, secretValues } from '../src/config.js';

/** 32 bytes in base64, shaped like a FormSG form secret key. */
const base = { FORMSG_SECRET_KEY: Buffer.alloc(32, 7).toString('base64') };

describe('settings', () => {
  it('fills safe defaults when only the form secret key is given', () => {
    const config = loadConfig(base);

    expect(config.port).toBe(3000);
    expect(config.host).toBe('127.0.0.1');
    expect(config.formsg.mode).toBe('production');
    expect(config.formsg.webhookUrl).toBe('http://127.0.0.1:3000/sites');
    expect(config.formsg.fields).toEqual({
      email: 'Government E-mail',
      agency: 'Agency',
      repoName: 'Repository Name',
      siteName: 'Site Name',
      pointOfContact: 'Point of Contact',
    });
    expect(config.database.url).toBeUndefined();
    expect(config.github.token).toBeUndefined();
    expect(config.adminTokens).toEqual([]);
    expect(config.retry).toEqual({
      maxAttempts: 5,
      maxElapsedMs: 600_000,
      baseDelayMs: 1_000,
      maxDelayMs: 60_000,
    });
  });

  it('treats empty variables as unset', () => {
    const config = loadConfig({ ...base, GITHUB_TOKEN: '', DATABASE_URL: '  ', SMTP_URL: '' });

    expect(config.github.token).toBeUndefined();
    expect(config.database.url).toBeUndefined();
    expect(config.mail.smtpUrl).toBeUndefined();
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['FORMSG_MODE', 'prod'],
    ['FORMSG_WEBHOOK_URL', 'not a url'],
    ['GITHUB_TEMPLATE', 'just-a-name'],
    ['OPS_EMAIL', 'ops-at-example'],
    ['RETRY_MAX_ATTEMPTS', '0'],
    ['AMPLIFY_ENV_VARS', 'NOEQUALS'],
    ['ADMIN_TOKEN', 'ops:short'],
    ['LOG_LEVEL', 'loud'],
    ['FORMSG_SECRET_KEY', 'abc'],
    ['FORMSG_SECRET_KEY', 'not-base64!!'],
    ['SMTP_URL', 'garbage'],
    ['SMTP_URL', 'http://127.0.0.1:25'],
    ['ALLOW_SANDBOX', 'yes'],
  ])('stops with a message naming %s when it is %j', (variable, value) => {
    const attempt = () => loadConfig({ ...base, [variable]: value });

    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(new RegExp(`\\b${variable}\\b`));
  });

  it('names every offending variable at once', () => {
    const attempt = () => loadConfig({ ...base, PORT: 'x', FORMSG_MODE: 'y' });

    expect(attempt).toThrow(/PORT[\s\S]*FORMSG_MODE|FORMSG_MODE[\s\S]*PORT/);
  });

  it('allows the built-in emulators outside production, and in production only when asked', () => {
    expect(loadConfig(base).github.allowSandbox).toBe(false);
    expect(loadConfig({ ...base, FORMSG_MODE: 'test' }).github.allowSandbox).toBe(true);
    expect(loadConfig({ ...base, ALLOW_SANDBOX: 'true' }).github.allowSandbox).toBe(true);
    expect(
      loadConfig({ ...base, FORMSG_MODE: 'test', ALLOW_SANDBOX: 'false' }).github.allowSandbox,
    ).toBe(false);
  });

  it('refuses half a pair of AWS credentials', () => {
    expect(() => loadConfig({ ...base, AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE' })).toThrow(
      /AWS_SECRET_ACCESS_KEY/,
    );
  });

  it('refuses the pg-boss driver without a PostgreSQL database to keep its queue in', () => {
    expect(() => loadConfig({ ...base, RUN_DRIVER: 'pgboss' })).toThrow(/RUN_DRIVER.*DATABASE_URL/);
    expect(
      loadConfig({ ...base, RUN_DRIVER: 'pgboss', DATABASE_URL: 'postgres://127.0.0.1/x' }).driver,
    ).toEqual({ kind: 'pgboss', concurrency: 4 });
  });

  it('reads named admin tokens and a bare one', () => {
    const named = loadConfig({
      ...base,
      ADMIN_TOKEN: 'alice:aaaaaaaaaaaaaaaa1,bob:bbbbbbbbbbbbbbbb2',
    });
    const bare = loadConfig({ ...base, ADMIN_TOKEN: 'cccccccccccccccc3' });

    expect(named.adminTokens).toEqual([
      { name: 'alice', token: 'aaaaaaaaaaaaaaaa1' },
      { name: 'bob', token: 'bbbbbbbbbbbbbbbb2' },
    ]);
    expect(bare.adminTokens).toEqual([{ name: 'admin', token: 'cccccccccccccccc3' }]);
  });

  it('reads Amplify environment variables as pairs or JSON', () => {
    const pairs = loadConfig({ ...base, AMPLIFY_ENV_VARS: 'A=1;B=two=2' });
    const json = loadConfig({ ...base, AMPLIFY_ENV_VARS: '{"A":"1"}' });

    expect(pairs.amplify.environmentVariables).toEqual({ A: '1', B: 'two=2' });
    expect(json.amplify.environmentVariables).toEqual({ A: '1' });
  });

  it('lists every secret it holds, including the SMTP password, for scrubbing', () => {
    const config = loadConfig({
      ...base,
      GITHUB_TOKEN: 'ghp_exampletoken123',
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'aws-secret-value',
      SMTP_URL: 'smtp://user:mail-password@127.0.0.1:2525',
      ADMIN_TOKEN: 'ops:admin-token-0123456789',
    });

    expect(secretValues(config)).toEqual(
      expect.arrayContaining([
        base.FORMSG_SECRET_KEY,
        'ghp_exampletoken123',
        'aws-secret-value',
        'mail-password',
        'admin-token-0123456789',
      ]),
    );
  });
});
