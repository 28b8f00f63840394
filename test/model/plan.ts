/**
 * Which generated paths to replay.
 *
 * There are far more simple paths than a CI run can replay (about 2,700: every failure point
 * times every outcome of each undo), so the replayed set is: for each variant, its shortest way
 * from start to end; a shortest path to every state (extended to a final state); a path around
 * every retry loop; then simple paths, chosen greedily, until every edge of the state graph,
 * every way into and out of each e-mail step, and every transition of the machine that a
 * replayable path can walk is walked. `MODEL_PATHS=pairs` covers every pair of consecutive
 * edges; `MODEL_PATHS=all` replays every replayable simple path.
 */
import type { DatabaseKind } from '../../db/database.js';
import { cannotBeWalked, machineInventory, trace } from './coverage.js';
import {
  VARIANTS,
  bfs,
  coverageKey,
  edgeKeys,
  finalGoal,
  loopPaths,
  pathKey,
  serializeState,
  shortestExtended,
  simplePaths,
  stateGraph,
  toPath,
  type ModelPath,
} from './paths.js';
import { leafOf } from './events.js';
import { scenarioFor, type UnreplayableReason } from './scenario.js';

/** What the generator found, what will be replayed, and what cannot be. */
export interface PathPlan {
  /** The paths to replay, in order. */
  selected: ModelPath[];
  counts: {
    simple: number;
    simpleReplayable: number;
    shortest: number;
    loops: number;
  };
  /** Simple paths that cannot be replayed, by reason. */
  unreplayable: Map<UnreplayableReason, number>;
  /** States of the graph that no replayable path reaches: variant, leaf, and coverage key. */
  unreached: Array<{ variant: string; leaf: string; state: string }>;
}

/**
 * How many paths to replay: `covering` (the default), `pairs` (every pair of consecutive
 * edges as well), or `all` (every replayable simple path as well).
 */
export type PlanMode = 'covering' | 'pairs' | 'all';

/** The paths to replay on `kind`: what can be driven from outside depends on the database. */
export function planPaths(options: { mode: PlanMode; kind: DatabaseKind }): PathPlan {
  const { kind, mode } = options;
  const selected = new Map<string, ModelPath>();
  const add = (path: ModelPath) => {
    if (!selected.has(pathKey(path))) selected.set(pathKey(path), path);
  };
  const unreplayable = new Map<UnreplayableReason, number>();
  const unreached: PathPlan['unreached'] = [];
  const loopsSeen = new Set<string>();
  const counts = { simple: 0, simpleReplayable: 0, shortest: 0, loops: 0 };
  const candidates: ModelPath[] = [];
  const targeted = new Set<string>();

  for (const variant of VARIANTS) {
    const graph = stateGraph(variant);
    const base = bfs(graph, serializeState(graph.initial), finalGoal(graph), false, kind);
    if (base) add(toPath(graph, 'shortest', base));

    const shortest = shortestExtended(graph, targeted, kind);
    counts.shortest += shortest.paths.length + shortest.unreached.length;
    unreached.push(
      ...shortest.unreached.map((state) => ({
        variant,
        leaf: leafOf(state),
        state: coverageKey(state),
      })),
    );
    shortest.paths.forEach(add);

    for (const [waiting, path] of loopPaths(graph, kind)) {
      if (loopsSeen.has(waiting)) continue;
      loopsSeen.add(waiting);
      counts.loops += 1;
      add(path);
    }

    for (const path of simplePaths(variant)) {
      counts.simple += 1;
      const scenario = scenarioFor(path, 'model-site', kind);
      if (!scenario.replayable) {
        unreplayable.set(scenario.reason, (unreplayable.get(scenario.reason) ?? 0) + 1);
        continue;
      }
      counts.simpleReplayable += 1;
      candidates.push(path);
    }
  }

  if (mode === 'all') candidates.forEach(add);
  else greedyCover(candidates, [...selected.values()], mode === 'pairs').forEach(add);
  fillTransitions(candidates, [...selected.values()], kind).forEach(add);

  return { selected: [...selected.values()], counts, unreplayable, unreached };
}

/**
 * What a path covers: its edges, and pairs of consecutive edges, so that what one step leaves
 * behind meets every way the next step can go. An e-mail says what happened before it, so the
 * pairs that end in leaving an e-mail step always count (an ops e-mail that failed, then the
 * requester's e-mail that says whether operations were told); with `allPairs`, every pair.
 */
function coverageItems(path: ModelPath, allPairs: boolean): string[] {
  const edges = edgeKeys(path);
  const pairs = edges.slice(1).map((edge, i) => `${edges[i]} >> ${edge}`);

  return [...edges, ...(allPairs ? pairs : pairs.filter((pair) => MAIL_PAIR.test(pair)))];
}

/** A pair whose second edge leaves an e-mail step. */
const MAIL_PAIR = / >> \{"notifying/;

/** Picks candidates, most new edges and edge pairs first, until all are walked. */
function greedyCover(
  candidates: ModelPath[],
  chosen: ModelPath[],
  allPairs: boolean,
): ModelPath[] {
  const items = (path: ModelPath) => coverageItems(path, allPairs);
  const walked = new Set(chosen.flatMap(items));
  const pool = candidates.map((path) => ({ path, edges: new Set(items(path)) }));
  const picked: ModelPath[] = [];

  for (;;) {
    let best: (typeof pool)[number] | undefined;
    let bestGain = 0;
    for (const entry of pool) {
      let gain = 0;
      for (const edge of entry.edges) if (!walked.has(edge)) gain += 1;
      if (gain > bestGain) {
        best = entry;
        bestGain = gain;
      }
    }
    if (!best) return picked;
    picked.push(best.path);
    for (const edge of best.edges) walked.add(edge);
  }
}

/** Adds, for each machine transition the chosen paths miss, the first candidate that walks it. */
function fillTransitions(
  candidates: ModelPath[],
  chosen: ModelPath[],
  kind: DatabaseKind,
): ModelPath[] {
  const walked = new Set(chosen.flatMap((path) => trace(path).transitions));
  const missing = new Set(
    machineInventory().transitions.filter((t) => !walked.has(t) && !cannotBeWalked(t, kind)),
  );
  const picked: ModelPath[] = [];

  for (const path of candidates) {
    if (missing.size === 0) break;
    const walks = trace(path).transitions.filter((t) => missing.has(t));
    if (walks.length === 0) continue;
    picked.push(path);
    for (const transition of walks) missing.delete(transition);
  }

  return picked;
}
