/**
 * The machine's structural rules (see ./structure.ts), on the real machine and on small
 * machines that break each rule, so that the check itself is shown to catch what it claims to.
 */
import { describe, expect, it } from 'vitest';
import { fromPromise, setup } from 'xstate';
import { siteCreationMachine } from '../../machines/site-creation.machine.js';
import { inputOf } from './paths.js';
import { structuralProblems } from './structure.js';

const work = fromPromise<void, { timeoutMs?: number }>(async () => undefined);

/** A one-step machine whose step state is shaped by `step`. */
function oneStep(step: Record<string, unknown>) {
  return setup({ actors: { createRepository: work } }).createMachine({
    id: 'one',
    initial: 'creating',
    states: { creating: step as never, done: { type: 'final' } },
  });
}

describe('the machine structure', () => {
  it('gives every invoke an onError, a timeout, and a declaration of what it calls', () => {
    const problems = structuralProblems(siteCreationMachine, inputOf('full'));

    expect(problems).toEqual([]);
  });

  it('reports an invoke without onError', () => {
    const machine = oneStep({
      meta: { calls: ['github'] },
      invoke: { src: 'createRepository', input: { timeoutMs: 1000 }, onDone: 'done' },
    });

    const problems = structuralProblems(machine, undefined);

    expect(problems).toEqual(['creating: the createRepository invoke has no onError']);
  });

  it('reports a step that calls the outside world without meta.calls', () => {
    const machine = oneStep({
      invoke: { src: 'createRepository', input: { timeoutMs: 1000 }, onError: 'done' },
    });

    const problems = structuralProblems(machine, undefined);

    expect(problems).toEqual([
      'creating: createRepository calls the outside world but meta.calls is missing',
    ]);
  });

  it('reports a step whose actor gets no timeout', () => {
    const machine = oneStep({
      meta: { calls: ['github'] },
      invoke: { src: 'createRepository', input: {}, onError: 'done' },
    });

    const problems = structuralProblems(machine, undefined);

    expect(problems).toEqual(['creating: the createRepository invoke has no timeoutMs above zero']);
  });

  it('accepts meta.calls declared on the parent step state', () => {
    const machine = oneStep({
      meta: { calls: ['github'] },
      initial: 'running',
      states: {
        running: {
          invoke: { src: 'createRepository', input: { timeoutMs: 1000 }, onError: '#one.done' },
        },
      },
    });

    const problems = structuralProblems(machine, undefined);

    expect(problems).toEqual([]);
  });
});
