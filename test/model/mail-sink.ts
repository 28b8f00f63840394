/**
 * A small SMTP server on 127.0.0.1 for the model tests: it speaks just enough SMTP for
 * nodemailer, keeps every accepted message, and refuses messages to a chosen recipient with a
 * chosen reply code. It greets at once; `smtp-server` waits 100 ms per connection to catch
 * early talkers, which hundreds of replayed paths cannot afford.
 */
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';

/** One accepted message. `to` holds the envelope's recipients, lower-cased. */
export interface SunkMail {
  to: string[];
  subject: string;
  text: string;
  raw: string;
}

/** Refuse the next `times` messages addressed to `to` with reply `code` (4xx or 5xx). */
export interface Refusal {
  to: string;
  code: number;
  times: number;
}

export interface MailSink {
  url: string;
  messages: SunkMail[];
  refuse(refusal: Refusal): void;
  /** Forgets messages and refusals. */
  reset(): void;
  /** Resolves once every message handed over so far has been parsed. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const GREETING = '220 model-sink ESMTP ready';

export async function startMailSink(): Promise<MailSink> {
  const messages: SunkMail[] = [];
  let refusals: Refusal[] = [];
  const parsing = new Set<Promise<void>>();
  const sockets = new Set<Socket>();

  const refusalFor = (recipients: string[]): Refusal | undefined => {
    const found = refusals.find((r) => r.times > 0 && recipients.includes(r.to));
    if (found) found.times -= 1;
    refusals = refusals.filter((r) => r.times > 0);

    return found;
  };

  const accept = (recipients: string[], raw: string): void => {
    const work = simpleParser(raw).then((parsed) => {
      messages.push({
        to: recipients,
        subject: parsed.subject ?? '',
        text: parsed.text ?? '',
        raw,
      });
    });
    parsing.add(work);
    void work.finally(() => parsing.delete(work));
  };

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    serveSession(socket, { refusalFor, accept });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    refuse(refusal) {
      refusals.push({ ...refusal, to: refusal.to.toLowerCase() });
    },
    reset() {
      messages.length = 0;
      refusals = [];
    },
    async flush() {
      await Promise.all([...parsing]);
    },
    close() {
      for (const socket of sockets) socket.destroy();

      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface SessionHooks {
  refusalFor(recipients: string[]): Refusal | undefined;
  accept(recipients: string[], raw: string): void;
}

/** One SMTP session: commands line by line, then the message body up to a lone dot. */
function serveSession(socket: Socket, hooks: SessionHooks): void {
  let pending = '';
  let inData = false;
  let body: string[] = [];
  let recipients: string[] = [];
  const reply = (line: string) => socket.write(`${line}\r\n`);

  const endOfData = () => {
    inData = false;
    const refusal = hooks.refusalFor(recipients);
    if (refusal) {
      reply(`${refusal.code} refused by the model sink`);
    } else {
      hooks.accept(recipients, body.join('\r\n'));
      reply('250 OK: queued');
    }
    body = [];
    recipients = [];
  };

  const command = (line: string) => {
    const verb = line.slice(0, 4).toUpperCase();
    switch (verb) {
      case 'EHLO':
        reply('250-model-sink');
        reply('250 8BITMIME');
        break;
      case 'HELO':
        reply('250 model-sink');
        break;
      case 'MAIL':
        recipients = [];
        reply('250 sender OK');
        break;
      case 'RCPT': {
        const address = /<([^>]*)>/.exec(line)?.[1] ?? '';
        recipients.push(address.toLowerCase());
        reply('250 recipient OK');
        break;
      }
      case 'DATA':
        inData = true;
        reply('354 end data with <CR><LF>.<CR><LF>');
        break;
      case 'RSET':
        recipients = [];
        reply('250 reset');
        break;
      case 'NOOP':
        reply('250 OK');
        break;
      case 'QUIT':
        reply('221 bye');
        socket.end();
        break;
      default:
        reply('502 command not implemented');
    }
  };

  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    pending += chunk;
    for (let end = pending.indexOf('\r\n'); end >= 0; end = pending.indexOf('\r\n')) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 2);
      if (!inData) command(line);
      else if (line === '.') endOfData();
      // Dot-stuffing: a body line that starts with a dot was sent with a second one.
      else body.push(line.startsWith('.') ? line.slice(1) : line);
    }
  });
  reply(GREETING);
}
