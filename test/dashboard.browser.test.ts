/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core, against the
 * whole service served over HTTP on 127.0.0.1. A submission goes through the sandbox, the
 * dashboard follows it to done by itself, a failed run shows its error, Retry completes it, and
 * a screenshot of the run's page is saved under test-results/.
 *
 * Without Chromium (a laptop without the package) the suite is skipped, and says so in its
 * name; in CI (`CI` set) it runs regardless, and fails if Chromium is missing.
 */
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { serve, type RunningServer } from '../src/sandbox/http-server.js';
import { databaseKinds } from './helpers/database.js';
import { startHarness, type Harness } from './helpers/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'test-admin-token-0123456789';
const SCREENSHOTS = join(process.cwd(), 'test-results');
const missing = !existsSync(CHROMIUM) && !process.env.CI;
const title = missing
  ? `dashboard in Chromium on %s (skipped: no Chromium at ${CHROMIUM}; apt-get install chromium)`
  : 'dashboard in Chromium on %s';

describe.skipIf(missing).each(databaseKinds)(title, (kind) => {
  let h: Harness;
  let server: RunningServer;
  let browser: Browser;

  beforeEach(async () => {
    h = await startHarness(kind);
    server = await serve(h.service.app);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });

  afterEach(async () => {
    await browser?.close();
    await server?.close();
    await h?.close();
  });

  /** Posts a FormSG submission over HTTP, as FormSG would, and returns its run id. */
  async function submit(answers: Parameters<Harness['build']>[0] = {}): Promise<string> {
    const submission = h.build(answers);
    const response = await fetch(`${server.url}/sites`, {
      method: 'POST',
      headers: submission.headers,
      body: JSON.stringify(submission.body),
    });
    const body = (await response.json()) as { runId: string };

    return body.runId;
  }

  function watch(page: Page) {
    const requests: string[] = [];
    const problems: string[] = [];
    page.on('request', (request) => requests.push(request.url()));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));

    return { requests, problems };
  }

  it('follows a run to done, shows a failed run, retries it and completes it', async () => {
    await h.addUser();
    await mkdir(SCREENSHOTS, { recursive: true });
    const screenshot = join(SCREENSHOTS, `dashboard-run-${kind}.png`);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const seen = watch(page);
    h.sandbox.amplify.faults.add({ method: 'POST', path: /^\/apps$/, delayMs: 1_500, times: 1 });

    await page.goto(`${server.url}/dashboard`);
    await page.fill('#token', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.url}/dashboard`);
    const okRun = await submit({ siteName: 'Browser Site' });
    await page.goto(`${server.url}/dashboard`);
    const okRow = page.locator(`tr[data-run="${okRun}"]`);
    const firstStatus = await okRow.getAttribute('data-status');
    await page.locator(`tr[data-run="${okRun}"][data-status="succeeded"]`).waitFor({
      timeout: 20_000,
    });
    await okRow.locator('a').first().click();
    const doneBox = page.locator('g[data-state="done"]');
    const doneClass = await doneBox.getAttribute('class');

    await h.settle();
    h.sandbox.amplify.faults.add({
      method: 'POST',
      path: /^\/apps$/,
      status: 400,
      errorType: 'BadRequestException',
      message: 'Invalid repository for the app',
      times: 1,
    });
    const badRun = await submit({ siteName: 'Retried Site' });
    await page.goto(`${server.url}/dashboard`);
    await page.locator(`tr[data-run="${badRun}"] a`).first().click();
    await page.locator('.badge.status-failed').waitFor({ timeout: 20_000 });
    const errorText = await page.locator('[data-testid="run-error"]').innerText();
    const retryEnabled = await page.locator('button[value="retry"]').isEnabled();

    await page.click('button[value="retry"]');
    await page.locator('.badge.status-succeeded').waitFor({ timeout: 20_000 });
    const notice = await page.locator('.notice').innerText();
    const current = await page.locator('g.current').getAttribute('data-state');
    const historyText = await page.locator('table.timeline').innerText();
    await page.screenshot({ path: screenshot, fullPage: true });

    expect(firstStatus).toBe('running');
    expect(doneClass).toContain('current');
    expect(errorText).toContain('BadRequestException');
    expect(errorText).toContain('Invalid repository for the app');
    expect(retryEnabled).toBe(true);
    expect(notice).toContain('Retry started');
    expect(current).toBe('done');
    expect(historyText).toContain('operator.action');
    expect(historyText).toContain('by tester');
    expect((await stat(screenshot)).size).toBeGreaterThan(10_000);
    const elsewhere = seen.requests.filter(
      (url) => !url.startsWith(`${server.url}/`) && !url.startsWith('data:'),
    );
    expect(elsewhere).toEqual([]);
    expect(seen.problems).toEqual([]);
  }, 120_000);
});
