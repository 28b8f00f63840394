/**
 * The service's metrics, in Prometheus text format: runs by final state, step durations,
 * retries, and the webhook's answers by status. A small registry of our own (counters and
 * histograms with labels) is all this needs. It is fed from the runner's history observer and
 * from a middleware on `POST /sites`, and read through `GET /metrics`.
 */
import type { MiddlewareHandler } from 'hono';
import type { RunEventDraft } from './runs/history.js';
import type { RunObserver } from './runs/runner.js';

/** What `GET /metrics` answers with: Prometheus text exposition format 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Upper bounds, in seconds, of the step-duration buckets (steps call remote APIs or poll). */
export const STEP_DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface Metrics {
  /** Counts a run's history events; give it to the runner as `RunnerOptions.observer`. */
  observeRun: RunObserver;
  /** Counts one answer of the webhook by its HTTP status. */
  countWebhookAnswer(status: number): void;
  /** Every metric, in Prometheus text format. */
  render(): string;
}

type Labels = Record<string, string>;

interface Family {
  render(): string[];
}

/** A counter family: one monotonic value per label set. */
class Counter implements Family {
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(
    private readonly name: string,
    private readonly help: string,
  ) {}

  inc(labels: Labels, by = 1): void {
    const key = labelKey(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }

  render(): string[] {
    const lines = header(this.name, this.help, 'counter');
    for (const { labels, value } of this.values.values()) {
      lines.push(`${this.name}${formatLabels(labels)} ${formatNumber(value)}`);
    }

    return lines;
  }
}

/** A histogram family: cumulative buckets, sum and count per label set. */
class Histogram implements Family {
  private readonly series = new Map<
    string,
    { labels: Labels; buckets: number[]; sum: number; count: number }
  >();

  constructor(
    private readonly name: string,
    private readonly help: string,
    private readonly bounds: readonly number[],
  ) {}

  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    const entry = this.series.get(key) ?? {
      labels,
      buckets: this.bounds.map(() => 0),
      sum: 0,
      count: 0,
    };

    this.bounds.forEach((bound, index) => {
      if (value <= bound) entry.buckets[index] = (entry.buckets[index] ?? 0) + 1;
    });
    entry.sum += value;
    entry.count += 1;
    this.series.set(key, entry);
  }

  render(): string[] {
    const lines = header(this.name, this.help, 'histogram');
    for (const { labels, buckets, sum, count } of this.series.values()) {
      this.bounds.forEach((bound, index) => {
        const le = formatLabels({ ...labels, le: formatNumber(bound) });
        lines.push(`${this.name}_bucket${le} ${buckets[index] ?? 0}`);
      });
      lines.push(`${this.name}_bucket${formatLabels({ ...labels, le: '+Inf' })} ${count}`);
      lines.push(`${this.name}_sum${formatLabels(labels)} ${formatNumber(sum)}`);
      lines.push(`${this.name}_count${formatLabels(labels)} ${count}`);
    }

    return lines;
  }
}

/** A fresh registry with the service's metrics, all at zero. */
export function createMetrics(): Metrics {
  const runsFinished = new Counter(
    'site_orchestrator_runs_finished_total',
    'Runs that reached a final state, by that state and the run status.',
  );
  const stepDuration = new Histogram(
    'site_orchestrator_step_duration_seconds',
    'How long each attempt of a step took, by step and outcome.',
    STEP_DURATION_BUCKETS,
  );
  const stepRetries = new Counter(
    'site_orchestrator_step_retries_total',
    'Step attempts that failed with a transient error and were scheduled again.',
  );
  const webhookAnswers = new Counter(
    'site_orchestrator_webhook_responses_total',
    'Answers of POST /sites, by HTTP status.',
  );
  const families: Family[] = [runsFinished, stepDuration, stepRetries, webhookAnswers];

  const observeEvent = (event: RunEventDraft): void => {
    switch (event.type) {
      case 'run.finished': {
        const status = event.detail?.status;
        runsFinished.inc({
          state: event.state ?? 'unknown',
          status: typeof status === 'string' ? status : 'unknown',
        });
        break;
      }
      case 'step.succeeded':
      case 'step.failed':
      case 'step.retrying': {
        const step = event.step ?? 'unknown';
        if (event.type === 'step.retrying') stepRetries.inc({ step });
        // Durations are unknown for the step that was in flight when a run was restored.
        if (event.durationMs !== undefined) {
          const outcome = event.type.slice('step.'.length);
          stepDuration.observe({ step, outcome }, event.durationMs / 1000);
        }
        break;
      }
      default:
        break;
    }
  };

  return {
    observeRun: (_runId, events) => {
      for (const event of events) observeEvent(event);
    },
    countWebhookAnswer: (status) => webhookAnswers.inc({ status: String(status) }),
    render: () => `${families.flatMap((family) => family.render()).join('\n')}\n`,
  };
}

/** Middleware that counts every answer to a `POST`, whichever handler (or error) made it. */
export function countWebhookAnswers(metrics: Metrics): MiddlewareHandler {
  return async (c, next) => {
    await next();
    if (c.req.method === 'POST') metrics.countWebhookAnswer(c.res.status);
  };
}

function header(name: string, help: string, type: 'counter' | 'histogram'): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
}

function labelKey(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([key, value]) => `${key}="${escapeLabel(value)}"`);

  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`;
}

/** Label values escape backslash, double quote and line feed; nothing else. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatNumber(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';

  return Number.isNaN(value) ? 'NaN' : String(value);
}
