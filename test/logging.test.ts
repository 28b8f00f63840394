/**
 * The service's JSON log lines, as the harness captures them: every line of a run names the
 * run (and its submission), and every line about a step names the step.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { STEP_OF_STATE } from '../machines/site-creation.machine.js';
import { databaseKinds } from './helpers/database.js';
import { startHarness, type Harness } from './helpers/harness.js';

type Line = Record<string, unknown>;

/** The lines written between two points of a test, by index into `h.logs`. */
function linesSince(h: Harness, start: number): Line[] {
  return h.logs.slice(start);
}

/** The step a state path belongs to, when it is one of a step's states. */
function stepOfState(state: string): string | undefined {
  const direct = STEP_OF_STATE[state];
  if (direct) return direct;

  const parent = state.split('.').slice(0, -1).join('.');

  return STEP_OF_STATE[parent];
}

describe.each(databaseKinds)('log lines of a run on %s', (kind) => {
  let h: Harness;

  beforeEach(async () => {
    h = await startHarness(kind);
  });

  afterEach(async () => {
    await h?.close();
  });

  it('names the run and its submission on every line it causes', async () => {
    await h.addUser();
    const start = h.logs.length;

    const { body, submission } = await h.submit();

    const lines = linesSince(h, start);
    expect(lines.length).toBeGreaterThan(10);
    for (const line of lines) {
      expect(line, String(line.msg)).toMatchObject({
        runId: body.runId,
        submissionId: submission.submissionId,
      });
    }
  });

  it('names the step on every step event and on entering any of a step\'s states', async () => {
    await h.addUser();
    h.sandbox.github.faults.add({ method: 'POST', path: /\/repos$/, status: 502, times: 1 });
    const start = h.logs.length;

    await h.submit();

    const lines = linesSince(h, start);
    const stepEvents = lines.filter((line) => String(line.event).startsWith('step.'));
    expect(stepEvents.map((line) => line.event)).toEqual(
      expect.arrayContaining(['step.started', 'step.succeeded', 'step.retrying']),
    );
    for (const line of stepEvents) {
      expect(line.step, String(line.event)).toEqual(expect.any(String));
    }
    const entered = lines.filter((line) => line.event === 'state.entered');
    const inSteps = entered.filter((line) => stepOfState(String(line.state)) !== undefined);
    expect(inSteps.map((line) => line.state)).toContain('creatingRepo.creatingRepository.waiting');
    for (const line of inSteps) {
      expect(line.step, String(line.state)).toBe(stepOfState(String(line.state)));
    }
    const retried = lines.find((line) => line.event === 'step.retrying');
    expect(retried).toMatchObject({ step: 'createRepository', attempt: 1, level: 40 });
  });
});
