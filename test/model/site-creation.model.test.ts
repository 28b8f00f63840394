/**
 * Model-based tests: paths generated from the real site-creation machine with `xstate/graph`,
 * each replayed against the real service (database, GitHub and Amplify emulators, SMTP sink),
 * then checked against the invariants every path must keep. A coverage gate fails when a state
 * or transition of the machine is walked by no replayed path, unless it is one of the few that
 * nothing outside the service can drive, each listed with the reason.
 *
 * `MODEL_PATHS=pairs` also covers every pair of consecutive edges; `MODEL_PATHS=all` replays
 * every replayable simple path (thousands: minutes, not seconds).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseKind } from '../../db/database.js';
import { databaseKinds } from '../helpers/database.js';
import { cannotBeWalked, machineInventory, trace, type Inventory } from './coverage.js';
import { leafOf } from './events.js';
import { KNOWN_DEFECTS, checkInvariants } from './invariants.js';
import { pathKey, type ModelPath } from './paths.js';
import { planPaths, type PathPlan, type PlanMode } from './plan.js';
import { replay } from './replay.js';
import { UNREPLAYABLE, scenarioFor, type UnreplayableReason } from './scenario.js';
import { startWorld, type World } from './world.js';

const MODE: PlanMode = (['pairs', 'all'] as const).find((m) => m === process.env.MODEL_PATHS) ??
  'covering';
const inventory = machineInventory();
const traces = new Map<string, Inventory>();
const plans = new Map(
  databaseKinds.map((kind) => {
    const plan = planPaths({ mode: MODE, kind });
    for (const path of plan.selected) traces.set(pathKey(path), trace(path));

    return [kind, plan] as const;
  }),
);

/** `full #12: findUser retried, createApp failed, deleteApp failed -> needsCleanup` */
function describePath(path: ModelPath, index: number): string {
  const notes: string[] = [];
  for (let i = 1; i < path.steps.length; i += 1) {
    const before = path.steps[i - 1]?.state;
    const step = path.steps[i];
    if (!before || !step) continue;
    const leaf = leafOf(before).replace(/\.running$/, '');
    const type = step.event.type;
    if (type === 'run.cancel') notes.push(`cancelled in ${leaf}`);
    if (!type.startsWith('xstate.error.') || leaf.endsWith('.waiting')) continue;
    const retryable = (step.event as { error?: { retryable?: boolean } }).error?.retryable;
    notes.push(`${leaf} ${retryable ? 'retried' : 'failed'}`);
  }
  const last = path.steps[path.steps.length - 1]?.state;
  const end = last ? leafOf(last) : '?';
  const story = notes.length > 0 ? notes.join(', ') : 'no fault';

  return `${path.variant} #${index + 1} (${path.kind}): ${story} -> ${end}`;
}

function plural(count: number, word: string): string {
  return `${count.toLocaleString('en')} ${word}${count === 1 ? '' : 's'}`;
}

function byReason(items: string[], kind: DatabaseKind): string {
  const counts = new Map<string, number>();
  for (const item of items) {
    const reason = cannotBeWalked(item, kind) ?? 'unexplained';
    counts.set(reason, (counts.get(reason) ?? 0) + 1);
  }

  return [...counts].map(([reason, count]) => `${reason} ${count}`).join(', ');
}

describe.each(databaseKinds)('every path of the site-creation machine on %s', (kind) => {
  const plan = plans.get(kind) as PathPlan;
  let world: World;
  const walkedStates = new Set<string>();
  const walkedTransitions = new Set<string>();
  const defectsSeen = new Map<string, number>();
  let replayed = 0;

  beforeAll(async () => {
    world = await startWorld(kind);
  });

  afterAll(async () => {
    await world?.close();
  });

  plan.selected.forEach((path, index) => {
    it(describePath(path, index), async () => {
      await world.reset();
      const names = { repoName: `model-site-${index + 1}`, siteName: `Model Site ${index + 1}` };
      const scenario = scenarioFor(path, names.repoName, kind);
      if (!scenario.replayable) throw new Error(UNREPLAYABLE[scenario.reason]);

      const result = await replay(world, scenario.phases, names);

      const problems = await checkInvariants(world, result);
      const unknown = problems.filter((problem) => {
        const defect = KNOWN_DEFECTS.find((known) => known.explains.test(problem));
        if (defect) defectsSeen.set(defect.id, (defectsSeen.get(defect.id) ?? 0) + 1);

        return defect === undefined;
      });

      expect(unknown).toEqual([]);
      const walked = traces.get(pathKey(path));
      walked?.states.forEach((state) => walkedStates.add(state));
      walked?.transitions.forEach((transition) => walkedTransitions.add(transition));
      replayed += 1;
    });
  });

  it('walks every state and transition that can be driven from outside the service', () => {
    const missedStates = inventory.states.filter((state) => !walkedStates.has(state));
    const missedTransitions = inventory.transitions.filter((t) => !walkedTransitions.has(t));
    const reasons = [...plan.unreplayable].map(([reason, n]) => `${reason} ${n}`).join(', ');
    const summary = [
      `model coverage on ${kind}:`,
      `  states       ${walkedStates.size} of ${inventory.states.length} walked` +
        (missedStates.length > 0 ? ` (not walked: ${byReason(missedStates, kind)})` : ''),
      `  transitions  ${walkedTransitions.size} of ${inventory.transitions.length} walked` +
        (missedTransitions.length > 0
          ? ` (not walked: ${byReason(missedTransitions, kind)})`
          : ''),
      `  paths        ${replayed} of ${plan.selected.length} chosen paths replayed ` +
        `(shortest paths to ${plan.counts.shortest} states, ${plan.counts.loops} retry loops);`,
      `               ${plural(plan.counts.simple, 'simple path')} to final states, ` +
        `${plan.counts.simpleReplayable.toLocaleString('en')} replayable ` +
        `(not: ${reasons || 'none'})`,
      ...[
        ...new Set([...missedStates, ...missedTransitions].map((i) => cannotBeWalked(i, kind))),
      ].map(
        (reason) => `  ${reason ?? 'unexplained'}: ${reason ? UNREPLAYABLE[reason] : '-'}`,
      ),
      ...plan.unreached.map(
        ({ variant, state }) => `  no replayable path reaches, in the ${variant} variant: ${state}`,
      ),
      ...KNOWN_DEFECTS.filter((defect) => defect.kinds.includes(kind)).map(
        (defect) =>
          `  known defect ${defect.id}, seen ${defectsSeen.get(defect.id) ?? 0} times: ` +
          defect.summary,
      ),
    ].join('\n');
    console.log(summary);

    const unexplained = [...missedStates, ...missedTransitions].filter(
      (item) => cannotBeWalked(item, kind) === undefined,
    );
    const walkedAnyway = [...walkedStates, ...walkedTransitions].filter(
      (item) => cannotBeWalked(item, kind) !== undefined,
    );

    const fixed = KNOWN_DEFECTS.filter(
      (defect) => defect.kinds.includes(kind) && !defectsSeen.has(defect.id),
    );

    expect(unexplained).toEqual([]);
    expect(walkedAnyway).toEqual([]);
    // A known defect that no longer shows is fixed: take it off the list.
    expect(fixed.map((defect) => defect.id)).toEqual([]);
    // A graph state no replayable path reaches must be one that cannot be, or walked elsewhere.
    const stranded = plan.unreached.filter(
      ({ leaf }) => cannotBeWalked(leaf, kind) === undefined && !walkedStates.has(leaf),
    );
    expect(stranded).toEqual([]);
  });
});
