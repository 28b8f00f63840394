/**
 * Serves a Hono app on the loopback interface, for the sandbox emulators and tests. The port is
 * chosen by the OS unless one is given.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve as serveNode } from '@hono/node-server';
import type { Hono } from 'hono';

/** A running server: where to reach it and how to stop it. */
export interface RunningServer {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string;
  /** Stops listening and drops every open connection, idle or not. */
  close(): Promise<void>;
}

/**
 * Starts `app` on 127.0.0.1 (port 0, that is any free port, unless `opts.port` is set) and
 * resolves once it listens.
 */
export function serve(
  // Any env and schema, so that apps with typed variables are accepted too.
  app: Hono<any, any, any>,
  opts: { port?: number } = {},
): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serveNode({
      fetch: app.fetch,
      hostname: '127.0.0.1',
      port: opts.port ?? 0,
    }) as Server;

    const onError = (error: Error) => reject(error);
    server.once('error', onError);

    server.once('listening', () => {
      server.off('error', onError);
      const { port } = server.address() as AddressInfo;

      resolve({ url: `http://127.0.0.1:${port}`, close: () => closeServer(server) });
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));

    // Clients keep connections alive; without this, close waits for them to time out.
    server.closeAllConnections();
  });
}
