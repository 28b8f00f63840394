/**
 * Does the webhook stay fast while runs are in flight? FormSG waits about ten seconds for an
 * answer, and the webhook only authenticates and records before answering, so its latency
 * should barely move when many runs are busy with GitHub and Amplify.
 *
 * Measures POST /sites on an idle service (the baseline), then again while runs are held in
 * their GitHub and Amplify calls, and prints the ratio. `npm run bench`.
 */
import { startHarness, type Harness } from '../test/helpers/harness.js';

// package.json pins an AWS SDK release that supports Node 20; its Node 22 notice is noise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 40);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 20);

async function timePosts(h: Harness, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const submission = h.build();
    const started = performance.now();
    const response = await h.post(submission);
    await response.arrayBuffer();
    times.push(performance.now() - started);
  }

  return times.sort((a, b) => a - b);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const h = await startHarness('pglite', { env: { LOG_LEVEL: 'silent' } });
  try {
    await h.addUser();
    await timePosts(h, 5);
    await h.settle();
    const idle = await timePosts(h, SAMPLES);
    await h.settle();

    // Now every run sits in a slow GitHub call, as during an outage that is not yet an error.
    h.sandbox.github.faults.add({ method: 'POST', path: /\/repos$/, delayMs: 10_000 });

    await Promise.all(Array.from({ length: IN_FLIGHT }, () => h.post(h.build())));
    const busy = await timePosts(h, SAMPLES);
    const running = await h.db
      .selectFrom('runs')
      .select(({ fn }) => fn.countAll<number>().as('count'))
      .where('status', '=', 'running')
      .executeTakeFirstOrThrow();

    const line = (name: string, sorted: number[]) =>
      `${name.padEnd(24)} p50 ${percentile(sorted, 50).toFixed(1).padStart(7)} ms` +
      `   p95 ${percentile(sorted, 95).toFixed(1).padStart(7)} ms`;
    process.stdout.write(`webhook latency, ${SAMPLES} deliveries each\n`);
    process.stdout.write(`${line('idle (baseline)', idle)}\n`);
    process.stdout.write(`${line(`${Number(running.count)} runs in flight`, busy)}\n`);
    process.stdout.write(
      `ratio busy / idle          p50 ${(percentile(busy, 50) / percentile(idle, 50)).toFixed(2)}` +
        `   p95 ${(percentile(busy, 95) / percentile(idle, 95)).toFixed(2)}\n`,
    );

    h.sandbox.github.faults.clear();
    await h.settle();
  } finally {
    await h.close();
  }
}

await main();
