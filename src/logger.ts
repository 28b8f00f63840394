/**
 * The service's structured logger. One instance is made at start-up and handed down; runs and
 * steps log through children bound to `runId` and `step`. Every line passes through a scrubber
 * that replaces known secret values, so a token that slips into an error message still never
 * reaches the log.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level: string;
  /** Values to replace with `[redacted]` wherever they appear in a line. */
  secrets: string[];
  /** Where lines go; standard output by default. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const scrub = createScrubber(options.secrets);

  return pino(
    {
      level: options.level,
      base: { service: 'site-orchestrator' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['*.token', '*.secretKey', '*.password', '*.accessToken', 'headers.authorization'],
        censor: '[redacted]',
      },
      hooks: { streamWrite: scrub },
    },
    options.destination ?? pino.destination(1),
  );
}

/** Returns a function that replaces every secret value in a string. */
export function createScrubber(secrets: string[]): (text: string) => string {
  const values = [...new Set(secrets.filter((s) => s.length >= 6))].sort(
    (a, b) => b.length - a.length,
  );
  if (values.length === 0) return (text) => text;

  const encoded = values.flatMap((value) => {
    const json = JSON.stringify(value).slice(1, -1);

    return json === value ? [value] : [value, json];
  });
  const pattern = new RegExp(encoded.map(escapeRegExp).join('|'), 'g');

  return (text) => text.replace(pattern, '[redacted]');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
