/**
 * Structural rules of the site-creation machine, checked on its definition:
 * - every invoke has an `onError`;
 * - every state whose invoke calls the outside world declares what it calls in `meta.calls`,
 *   on itself or on its parent step state, naming known services only;
 * - every step invoke hands its actor a `timeoutMs` above zero.
 * The waits between attempts (`sleep`) and the webhook's own checks call nothing outside.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { getStateNodes } from 'xstate/graph';

/** Actors that call nothing outside the process, and why that is so. */
export const LOCAL_ACTORS: Readonly<Record<string, string>> = {
  sleep: 'waits on a timer until the next attempt',
  authenticate: 'verifies the signature and decrypts the body in memory',
  validateRequest: 'reads the decrypted answers',
};

export const KNOWN_CALLS = ['github', 'amplify', 'database', 'smtp'] as const;

function callsOf(node: AnyStateNode | undefined): unknown {
  return (node?.meta as { calls?: unknown } | undefined)?.calls;
}

/** Problems with `machine`'s invokes, in words; none for a sound machine. */
export function structuralProblems(
  machine: AnyStateMachine,
  sampleInput: unknown,
): string[] {
  const problems: string[] = [];
  const context = machine.getInitialSnapshot(fakeScope(), sampleInput).context as unknown;

  for (const node of getStateNodes(machine.root)) {
    const where = node.path.join('.');
    for (const invoke of node.invoke) {
      const src = String(invoke.src);
      if (!node.transitions.has(`xstate.error.actor.${invoke.id}`)) {
        problems.push(`${where}: the ${src} invoke has no onError`);
      }
      if (src === 'sleep') continue;

      const input = typeof invoke.input === 'function'
        ? (invoke.input as (args: unknown) => unknown)({ context, event: { type: 'x' }, self: {} })
        : invoke.input;
      const timeoutMs = (input as { timeoutMs?: unknown } | undefined)?.timeoutMs;
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) {
        problems.push(`${where}: the ${src} invoke has no timeoutMs above zero`);
      }
      if (LOCAL_ACTORS[src] !== undefined) continue;

      const calls = callsOf(node) ?? callsOf(node.parent);
      if (!Array.isArray(calls) || calls.length === 0) {
        problems.push(`${where}: ${src} calls the outside world but meta.calls is missing`);
      } else {
        const unknown = calls.filter((c) => !(KNOWN_CALLS as readonly unknown[]).includes(c));
        if (unknown.length > 0) problems.push(`${where}: unknown meta.calls ${String(unknown)}`);
      }
    }
  }

  return problems;
}

/** Enough of an actor scope for `getInitialSnapshot` to compute the context. */
function fakeScope(): never {
  return {
    self: { send: () => undefined },
    logger: () => undefined,
    id: 'structure',
    sessionId: 'structure',
    defer: () => undefined,
    system: { _sendInspectionEvent: () => undefined, _bookId: () => 'x', _register: () => '' },
    stopChild: () => undefined,
    emit: () => undefined,
    actionExecutor: () => undefined,
  } as never;
}
