/**
 * Fault injection shared by the sandbox emulators. Tests tell an emulator to fail or delay the
 * calls that match a rule; the emulator renders the failure in its own API's error shape.
 */

export interface FaultRule {
  /** HTTP method to match; any method when absent. */
  method?: string;
  /** Matches the request path (no query string); a string matches as a substring. */
  path: string | RegExp;
  /** Answer with this status instead of handling the call. Absent: only delay, then handle. */
  status?: number;
  /** Error name in the emulator's error shape (Amplify's `x-amzn-errortype`). */
  errorType?: string;
  /** Error message in the emulator's error shape. */
  message?: string;
  /** Extra response headers, for instance `retry-after`. */
  headers?: Record<string, string>;
  /** Wait this long before answering (or before handling, when no status is set). */
  delayMs?: number;
  /** Let this many matching calls through before the rule applies. */
  skip?: number;
  /** Apply to this many matching calls, then retire. Unlimited when absent. */
  times?: number;
  /** Apply to this share (0..1) of matching calls, drawn from a seeded generator. */
  rate?: number;
}

export interface FaultHit {
  rule: FaultRule;
  ruleId: number;
}

/** Holds fault rules and decides, call by call, which one applies. */
export class FaultInjector {
  private rules = new Map<number, { rule: FaultRule; seen: number; applied: number }>();
  private nextId = 1;
  private seed: number;

  constructor(seed = 0x5eed) {
    this.seed = seed >>> 0;
  }

  /** Adds a rule and returns its id, for `remove`. */
  add(rule: FaultRule): number {
    const id = this.nextId++;
    this.rules.set(id, { rule, seen: 0, applied: 0 });

    return id;
  }

  remove(id: number): void {
    this.rules.delete(id);
  }

  clear(): void {
    this.rules.clear();
  }

  /** Finds the first live rule matching this call and counts the call against it. */
  match(method: string, path: string): FaultHit | undefined {
    for (const [ruleId, entry] of this.rules) {
      const { rule } = entry;
      if (rule.method && rule.method.toUpperCase() !== method.toUpperCase()) continue;
      const pathMatches =
        typeof rule.path === 'string' ? path.includes(rule.path) : rule.path.test(path);
      if (!pathMatches) continue;

      entry.seen += 1;
      if (rule.skip !== undefined && entry.seen <= rule.skip) continue;
      if (rule.times !== undefined && entry.applied >= rule.times) continue;
      if (rule.rate !== undefined && this.random() >= rule.rate) continue;

      entry.applied += 1;

      return { rule, ruleId };
    }

    return undefined;
  }

  /** mulberry32: small, seeded, good enough to pick which calls fail. */
  private random(): number {
    this.seed = (this.seed + 0x6d2b79f5) >>> 0;
    let t = this.seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);

    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Resolves after `ms`, or rejects early when the signal aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
