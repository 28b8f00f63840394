/**
 * Live inspection, opt-in: the inspection events of running machines (actors created, events
 * received, snapshots) stream to a WebSocket server on this machine, in the format
 * `@statelyai/inspect` writes, for the Stately inspector or any tool that reads it.
 *
 * Only loopback is allowed (config refuses other hosts), and never the hosted inspector: its
 * "sky" mode sends everything to a third party. Events are sanitized before they leave: the
 * webhook delivery and raw answers are dropped, keys that name secrets are dropped, and known
 * secret values are replaced in every string.
 *
 * We use `createInspector` with a socket adapter of our own rather than the package's
 * `createWebSocketInspector`: that one reconnects on a timer that `stop()` cannot cancel, so a
 * service that shut down while its inspector was unreachable would never exit.
 */
import { createInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import WebSocket from 'ws';
import type { InspectionEvent, Observer } from 'xstate';
import { createScrubber, type Logger } from './logger.js';

/** Context and event keys whose values never leave the process. */
const DROPPED_KEYS = new Set(['delivery', 'responses']);

/** Keys whose names say they hold a credential; dropped wherever they appear. */
const SECRET_KEY = /token|secret|password|passwd|signature|authorization|credential|api_?key/i;

/** Deeper values are cut off; a snapshot of our machine is about six levels deep. */
const MAX_DEPTH = 12;

/** Events kept while the socket is down, newest last. */
const MAX_PENDING = 500;

export interface LiveInspectorOptions {
  /** A `ws://` URL on a loopback host (config validates it). */
  url: string;
  /** Values to replace with `[redacted]` wherever they appear. */
  secrets: string[];
  logger: Logger;
  /** Wait before connecting again after the socket closes or fails (default 2 s). */
  reconnectDelayMs?: number;
}

export interface LiveInspector {
  /** Give this to `createActor(..., { inspect })`, e.g. through `RunnerOptions.inspect`. */
  inspect: Observer<InspectionEvent>;
  /** Closes the socket and stops reconnecting; events not yet sent are dropped. */
  stop(): void;
}

/**
 * A sanitizer for inspection data: returns a plain-JSON copy of `value` without the delivery,
 * the raw answers or credential-named keys, with every known secret value replaced. Cycles and
 * values deeper than a dozen levels are cut off; functions are left out. Never mutates `value`.
 */
export function createInspectionSanitizer(secrets: string[]): (value: unknown) => unknown {
  const scrub = createScrubber(secrets);

  const walk = (value: unknown, depth: number, seen: WeakSet<object>): unknown => {
    if (typeof value === 'string') return scrub(value);
    if (typeof value === 'bigint') return String(value);
    if (value === null || typeof value !== 'object') {
      return typeof value === 'function' || typeof value === 'symbol' ? undefined : value;
    }
    if (seen.has(value)) return '[Circular]';
    if (depth >= MAX_DEPTH) return '[Truncated]';

    seen.add(value);
    try {
      return walkObject(value, depth, seen);
    } finally {
      seen.delete(value);
    }
  };

  const walkObject = (value: object, depth: number, seen: WeakSet<object>): unknown => {
    if (value instanceof Date) return value.toISOString();
    if (value instanceof Error) return { name: value.name, message: scrub(value.message) };
    if (value instanceof Set) return walk([...value], depth, seen);
    if (value instanceof Map) return walk(Object.fromEntries(value), depth, seen);
    if (Array.isArray(value)) return value.map((item) => walk(item, depth + 1, seen) ?? null);

    // Machine snapshots and actor references say how they serialise.
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const json: unknown = toJSON.call(value);
      if (json !== value) return walk(json, depth, seen);
    }

    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (DROPPED_KEYS.has(key) || SECRET_KEY.test(key)) continue;
      const clean = walk(item, depth + 1, seen);
      if (clean !== undefined) copy[key] = clean;
    }

    return copy;
  };

  return (value) => walk(value, 0, new WeakSet());
}

/**
 * Starts streaming inspection events to `options.url`. The socket connects in the background and
 * reconnects after failures; events wait (up to a bound) until it is open.
 */
export function startLiveInspector(options: LiveInspectorOptions): LiveInspector {
  const sanitize = createInspectionSanitizer(options.secrets);
  const adapter = new LoopbackSocketAdapter(options);
  const inspector = createInspector(adapter, {
    sanitizeContext: (context) => sanitize(context) as typeof context,
    sanitizeEvent: (event) => sanitize(event) as typeof event,
    // The whole event too: child actors' snapshots carry the context in their input.
    serialize: (event) => sanitize(event) as StatelyInspectionEvent,
  });

  inspector.start();

  return {
    inspect: inspector.inspect,
    stop: () => inspector.stop(),
  };
}

/** Sends each inspection event as one JSON text message, as `@statelyai/inspect` does. */
class LoopbackSocketAdapter {
  private socket: WebSocket | undefined;
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private warned = false;

  constructor(private readonly options: LiveInspectorOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.pending = [];
    const socket = this.socket;
    this.socket = undefined;
    if (socket?.readyState === WebSocket.OPEN) socket.close(1000, 'service stopping');
    else socket?.terminate();
  }

  send(event: StatelyInspectionEvent): void {
    if (this.stopped) return;

    const message = JSON.stringify(event);
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.socket.send(message);

      return;
    }
    this.pending.push(message);
    if (this.pending.length > MAX_PENDING) this.pending.shift();
  }

  private connect(): void {
    const { logger } = this.options;
    const socket = new WebSocket(this.options.url);
    this.socket = socket;

    socket.on('open', () => {
      logger.info({ url: this.options.url }, 'inspection socket connected');
      this.warned = false;
      for (const message of this.pending) socket.send(message);
      this.pending = [];
    });
    socket.on('error', (error) => {
      // Said once per outage: a missing inspector is not worth a line every few seconds.
      if (this.stopped || this.warned) return;
      this.warned = true;
      logger.warn({ url: this.options.url, err: error }, 'inspection socket unavailable');
    });
    socket.on('close', () => {
      if (this.stopped || this.socket !== socket) return;
      this.socket = undefined;
      this.timer = setTimeout(() => this.connect(), this.options.reconnectDelayMs ?? 2_000);
      this.timer.unref();
    });
  }
}
