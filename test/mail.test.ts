import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { simpleParser } from 'mailparser';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { PermanentError, TransientError, type AppError } from '../src/errors.js';
import { classifyMailError, createMailer, type Mailer } from '../src/mail/mailer.js';
import {
  cleanupNeededMail,
  escapeHtml,
  invalidRequestMail,
  notRegisteredMail,
  siteFailedMail,
  siteReadyMail,
  type MailContent,
} from '../src/mail/templates.js';
import { startSmtpSink, type SmtpSink } from './helpers/smtp-sink.js';

const FROM = 'Sites <sites@example.gov.sg>';
const TO = 'jane@agency.gov.sg';
const SECRET = 'ghp_s3cr3tT0kenThatMustNeverLeak';

const READY = {
  siteName: 'Example Site',
  repoName: 'example-site',
  repoUrl: 'https://github.com/isomerpages/example-site',
  stagingUrl: 'https://staging.d1.amplifyapp.com',
  productionUrl: 'https://master.d1.amplifyapp.com',
};

let outboxDir: string;
let sink: SmtpSink | undefined;
let mailer: Mailer | undefined;

beforeEach(async () => {
  outboxDir = await mkdtemp(join(tmpdir(), 'outbox-'));
});

afterEach(async () => {
  mailer?.close();
  mailer = undefined;
  await sink?.close();
  sink = undefined;
  await rm(outboxDir, { recursive: true, force: true });
});

async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    return error as AppError;
  }
  throw new Error('the message was sent');
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return (server.address() as AddressInfo).port;
}

describe('outbox mode', () => {
  it('writes each message as a parseable .eml file', async () => {
    mailer = createMailer({ outboxDir: join(outboxDir, 'new'), from: FROM });
    const content = siteReadyMail(READY);

    const sent = await mailer.send({ to: TO, ...content, messageId: '<run-1.ready@sites>' });

    expect(mailer.mode).toBe('outbox');
    expect(sent.path).toBeDefined();
    expect(await readdir(join(outboxDir, 'new'))).toEqual([sent.path?.split('/').pop()]);
    expect(sent.path).toMatch(/run-1\.ready@sites\.eml$/);
    const parsed = await simpleParser(await readFile(sent.path ?? ''));
    expect(parsed.messageId).toBe('<run-1.ready@sites>');
    expect(sent.messageId).toBe('<run-1.ready@sites>');
    expect(parsed.subject).toBe('Your site Example Site is ready');
    expect(parsed.text).toContain('https://staging.d1.amplifyapp.com');
    expect(parsed.html).toContain('<a href="https://master.d1.amplifyapp.com">');
    expect(parsed.from?.text).toContain('sites@example.gov.sg');
  });

  it('keeps one file per message', async () => {
    mailer = createMailer({ outboxDir, from: FROM });
    const content = invalidRequestMail({ field: 'Agency', reason: 'this answer is empty' });

    await mailer.send({ to: TO, ...content });
    await mailer.send({ to: TO, ...content });

    const files = (await readdir(outboxDir)).filter((name) => name.endsWith('.eml'));
    expect(files).toHaveLength(2);
  });
});

describe('SMTP mode', () => {
  it('delivers text and HTML to the SMTP server', async () => {
    sink = await startSmtpSink();
    mailer = createMailer({ smtpUrl: sink.url, outboxDir, from: FROM });
    const content = siteReadyMail(READY);

    const sent = await mailer.send({ to: TO, ...content, messageId: '<run-2.ready@sites>' });

    const [message] = await sink.waitFor(1);
    expect(mailer.mode).toBe('smtp');
    expect(sent.messageId).toBe('<run-2.ready@sites>');
    expect(message?.messageId).toBe('<run-2.ready@sites>');
    expect(message?.from).toBe('sites@example.gov.sg');
    expect(message?.to).toEqual([TO]);
    expect(message?.subject).toBe(content.subject);
    expect(message?.text).toContain('Repository: example-site');
    expect(message?.html).toContain('<strong>Example Site</strong>');
    expect(await readdir(outboxDir)).toEqual([]);
  });

  it('delivers a site name with a script tag escaped in the HTML', async () => {
    sink = await startSmtpSink();
    mailer = createMailer({ smtpUrl: sink.url, outboxDir, from: FROM });
    const content = siteReadyMail({ ...READY, siteName: '<script>alert(1)</script>' });

    await mailer.send({ to: TO, ...content });

    const [message] = await sink.waitFor(1);
    expect(message?.html).not.toContain('<script>');
    expect(message?.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(message?.subject).toBe('Your site <script>alert(1)</script> is ready');
  });

  it('treats a 451 reply as transient', async () => {
    sink = await startSmtpSink();
    sink.failNext(451);
    mailer = createMailer({ smtpUrl: sink.url, outboxDir, from: FROM });

    const error = await failure(mailer.send({ to: TO, ...siteReadyMail(READY) }));

    expect(error).toBeInstanceOf(TransientError);
    expect(error.retryable).toBe(true);
    expect(error.service).toBe('smtp');
    expect(error.status).toBe(451);
    expect(sink.messages).toHaveLength(0);
  });

  it('treats a 550 reply as permanent', async () => {
    sink = await startSmtpSink({ failWith: { code: 550 } });
    mailer = createMailer({ smtpUrl: sink.url, outboxDir, from: FROM });

    const error = await failure(mailer.send({ to: TO, ...siteReadyMail(READY) }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(error.retryable).toBe(false);
    expect(error.service).toBe('smtp');
    expect(error.status).toBe(550);
  });

  it('delivers once the refusals run out', async () => {
    sink = await startSmtpSink();
    sink.failNext(421, 2);
    mailer = createMailer({ smtpUrl: sink.url, outboxDir, from: FROM });
    const mail = { to: TO, ...siteReadyMail(READY) };

    const first = await failure(mailer.send(mail));
    const second = await failure(mailer.send(mail));
    await mailer.send(mail);

    expect(first).toBeInstanceOf(TransientError);
    expect(second).toBeInstanceOf(TransientError);
    expect(sink.messages).toHaveLength(1);
  });

  it('keeps SMTP credentials out of the error', async () => {
    sink = await startSmtpSink({ failWith: { code: 554 } });
    const url = sink.url.replace('smtp://', `smtp://mailer:${SECRET}@`);
    mailer = createMailer({ smtpUrl: url, outboxDir, from: FROM });

    const error = await failure(mailer.send({ to: TO, ...siteReadyMail(READY) }));

    expect(error).toBeInstanceOf(PermanentError);
    expect(`${error.message} ${String(error.stack)}`).not.toContain(SECRET);
  });

  it('gives up on a server that never greets, as a transient fault', async () => {
    const silent = createServer(() => {});
    const port = await listen(silent);
    mailer = createMailer({
      smtpUrl: `smtp://127.0.0.1:${port}`,
      outboxDir,
      from: FROM,
      timeoutMs: 300,
    });

    const started = Date.now();
    const error = await failure(mailer.send({ to: TO, ...siteReadyMail(READY) }));

    silent.close();
    silent.unref();
    expect(error).toBeInstanceOf(TransientError);
    expect(error.code).toBe('ETIMEDOUT');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('treats a refused connection as transient', async () => {
    const closed = createServer();
    const port = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    mailer = createMailer({ smtpUrl: `smtp://127.0.0.1:${port}`, outboxDir, from: FROM });

    const error = await failure(mailer.send({ to: TO, ...siteReadyMail(READY) }));

    expect(error).toBeInstanceOf(TransientError);
  });

  it('stops when the signal aborts, as a transient fault', async () => {
    sink = await startSmtpSink();
    mailer = createMailer({ smtpUrl: sink.url, outboxDir, from: FROM });

    const error = await failure(
      mailer.send({ to: TO, ...siteReadyMail(READY) }, AbortSignal.abort()),
    );

    expect(error).toBeInstanceOf(TransientError);
    expect(sink.messages).toHaveLength(0);
  });
});

describe('classifying mail errors', () => {
  it.each([
    [{ code: 'EENVELOPE', responseCode: 452 }, true],
    [{ code: 'EMESSAGE', responseCode: 503 }, true],
    [{ code: 'EENVELOPE', responseCode: 553 }, false],
    [{ code: 'EAUTH', responseCode: 535 }, false],
    [{ code: 'ESOCKET', originalCode: 'ECONNREFUSED' }, true],
    [{ code: 'ECONNECTION' }, true],
    [{ code: 'EDNS', originalCode: 'EAI_AGAIN' }, true],
    [{ code: 'EDNS', originalCode: 'ENOTFOUND' }, false],
    [{ code: 'EAUTH' }, false],
    [{ code: 'ECONFIG' }, false],
  ])('classifies %j as retryable: %s', (fields, retryable) => {
    const error = Object.assign(new Error('nodemailer failure'), fields);

    const classified = classifyMailError(error);

    expect(classified.retryable).toBe(retryable);
    expect(classified.service).toBe('smtp');
    expect(classified.cause).toBe(error);
  });
});

describe('templates', () => {
  const everything = (): Array<[string, MailContent]> => {
    // Secrets slipped in beside the declared fields, and into a reason's stack trace.
    const near = { token: SECRET, error: new Error(SECRET), stack: `at ${SECRET}` };
    const reason = `GitHub answered 401\n    at request (/app/${SECRET}/octokit.js:1:1)`;

    return [
      ['not registered', notRegisteredMail({ email: TO, siteName: 'Site', ...near })],
      [
        'invalid request',
        invalidRequestMail({ field: 'Agency', reason: `empty\n${SECRET}`, ...near }),
      ],
      ['ready', siteReadyMail({ ...READY, ...near })],
      [
        'failed',
        siteFailedMail({
          siteName: 'Site',
          failedStep: 'creating the GitHub repository',
          reason,
          undone: [],
          opsNotified: true,
          ...near,
        }),
      ],
      [
        'clean-up',
        cleanupNeededMail({
          runId: 'run-1',
          siteName: 'Site',
          failedStep: 'creating the Amplify app',
          reason,
          leftBehind: [{ kind: 'Amplify app', id: 'd123', where: 'ap-southeast-1' }],
          ...near,
        }),
      ],
    ];
  };

  it('never carries a secret passed anywhere near them', () => {
    const rendered = everything();

    for (const [, content] of rendered) {
      expect(JSON.stringify(content)).not.toContain(SECRET);
      expect(JSON.stringify(content)).not.toMatch(/\bat .*:\d+:\d+/);
    }
    expect(rendered).toHaveLength(5);
  });

  it('escapes every form value in the HTML', () => {
    const evil = '<img src=x onerror="alert(1)">&';

    const rendered = [
      notRegisteredMail({ email: evil, siteName: evil, supportEmail: evil }),
      invalidRequestMail({ siteName: evil, field: evil, reason: evil }),
      siteReadyMail({
        siteName: evil,
        repoName: evil,
        repoUrl: evil,
        stagingUrl: evil,
        productionUrl: evil,
      }),
      siteFailedMail({
        siteName: evil,
        failedStep: evil,
        reason: evil,
        undone: [evil],
        opsNotified: false,
      }),
      cleanupNeededMail({
        runId: evil,
        siteName: evil,
        failedStep: evil,
        reason: evil,
        leftBehind: [{ kind: evil, id: evil, where: evil }],
      }),
    ];

    for (const content of rendered) {
      expect(content.html).not.toContain('<img');
      expect(content.html).toContain(escapeHtml(evil));
    }
  });

  it('escapes the five HTML-special characters', () => {
    const escaped = escapeHtml(`<a href="x">Tom & Jerry's</a>`);

    expect(escaped).toBe('&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;');
  });

  it('claims no clean-up when nothing was undone', () => {
    const input = {
      siteName: 'Site',
      failedStep: 'creating the GitHub repository',
      reason: 'GitHub is unavailable',
      undone: [],
      opsNotified: false,
    };

    const content = siteFailedMail(input);

    expect(content.text).toContain('while creating the GitHub repository');
    expect(content.text).toContain('Reason: GitHub is unavailable');
    expect(`${content.text}${content.html}`).not.toMatch(/undid|clean|removed|deleted/i);
    expect(`${content.text}${content.html}`).not.toContain('operations team');
  });

  it('lists exactly the clean-ups that were done', () => {
    const undone = ['deleted the GitHub repository', 'removed the database records'];

    const content = siteFailedMail({
      siteName: 'Site',
      failedStep: 'creating the Amplify app',
      reason: 'Amplify refused the request',
      undone,
      opsNotified: true,
    });

    expect(content.text).toContain('- deleted the GitHub repository');
    expect(content.text).toContain('- removed the database records');
    expect(content.html).toContain('<li>deleted the GitHub repository</li>');
    expect(content.text.match(/^- /gm)).toHaveLength(2);
    expect(content.text).toContain('operations team has been told');
  });

  it('tells an unregistered requester how to become a user', () => {
    const content = notRegisteredMail({
      email: TO,
      siteName: 'Site',
      supportEmail: 'support@example.gov.sg',
    });

    expect(content.text).toContain('not a registered user');
    expect(content.text).toContain("agency's platform administrator");
    expect(content.text).toContain('support@example.gov.sg');
    expect(content.html).toContain('href="mailto:support@example.gov.sg"');
  });

  it('names the wrong answer and the reason', () => {
    const content = invalidRequestMail({
      siteName: 'Site',
      field: 'Repository Name',
      reason: 'the repository name cannot end in ".git"',
    });

    expect(content.text).toContain('Question: Repository Name');
    expect(content.text).toContain('Problem: the repository name cannot end in ".git"');
    expect(content.text).toContain('submit the form again');
  });

  it('lists what the failed run left behind for operations', () => {
    const content = cleanupNeededMail({
      runId: 'run-9',
      siteName: 'Site',
      failedStep: 'deleting the Amplify app',
      reason: 'Amplify timed out',
      leftBehind: [
        { kind: 'GitHub repository', id: 'isomerpages/site', where: 'github.com' },
        { kind: 'Amplify app', id: 'd9', where: 'ap-southeast-1' },
      ],
    });

    expect(content.subject).toContain('run-9');
    expect(content.text).toContain('- GitHub repository isomerpages/site in github.com');
    expect(content.text).toContain('- Amplify app d9 in ap-southeast-1');
    expect(content.html.match(/<tr>/g)).toHaveLength(3);
  });

  it('links only web addresses', () => {
    const content = siteReadyMail({ ...READY, stagingUrl: 'javascript:alert(1)' });

    expect(content.html).not.toContain('href="javascript:');
    expect(content.html).toContain('javascript:alert(1)');
  });
});
