/**
 * Paths through the real site-creation machine, generated with `xstate/graph`, and the choice
 * of which of them to replay.
 *
 * States are told apart by their value plus the few context facts the guards read: with the
 * whole context (the retry counter, timestamps) the state space would have no end. Simple paths
 * never take a retry loop back (running -> waiting -> running), so each loop gets a path of its
 * own: the shortest path to the loop's source, the loop, then the shortest way on to a final
 * state. A shortest path to a state that is not final goes on the same way. Which of these
 * paths are replayed is chosen in ./plan.ts.
 */
import type { DatabaseKind } from '../../db/database.js';
import {
  getAdjacencyMap,
  getShortestPaths,
  getSimplePaths,
  type AdjacencyMap,
  type StatePath,
} from 'xstate/graph';
import {
  initialContext,
  siteCreationMachine,
  type SiteCreationContext,
  type SiteCreationEvent,
  type SiteCreationInput,
} from '../../machines/site-creation.machine.js';
import {
  actorEvents,
  eventsFor,
  leafOf,
  type ModelEvent,
  type ModelSnapshot,
} from './events.js';
import { edgeReason } from './scenario.js';

/** One generated path: its input variant and the events it takes, each with where it led. */
export interface ModelPath {
  variant: VariantName;
  /** How it was found. */
  kind: 'simple' | 'shortest' | 'loop';
  /** The first step is the initial state (event `xstate.init`). */
  steps: Array<{ event: ModelEvent; state: ModelSnapshot }>;
}

/** The inputs paths are generated for, each making a different set of guards reachable. */
export const VARIANTS = ['full', 'bare', 'retrySite', 'retryUser', 'rollback'] as const;
export type VariantName = (typeof VARIANTS)[number];

/** Retry settings for generation: the guards only need a first failure to be retryable. */
const POLICY = { maxAttempts: 4, maxElapsedMs: 600_000, baseDelayMs: 5, maxDelayMs: 20 };

const DELIVERY = { signature: 't=1,s=a,f=b,v1=c', body: {} };

/** What an earlier, failed go knew, for operator retries and rollbacks. */
function earlierGo(overrides: Partial<SiteCreationContext>): SiteCreationContext {
  const fresh = initialContext({
    runId: 'model-run',
    delivery: null,
    policy: POLICY,
    stepTimeoutMs: 5_000,
    team: 'site-editors',
    opsEmail: 'ops@example.gov.sg',
  });

  return {
    ...fresh,
    submissionId: '65a1b2c3d4e5f60718293a4b',
    formId: '65a1b2c3d4e5f60718293a4c',
    requesterEmail: 'officer@agency.gov.sg',
    request: {
      email: 'officer@agency.gov.sg',
      agency: 'Ministry of Examples',
      repoName: 'model-site',
      siteName: 'Model Site',
      pointOfContact: 'Jane Tan',
    },
    userId: 1,
    siteId: 1,
    attempted: { repo: true, app: true },
    ...overrides,
  };
}

/** The input of each variant. */
export function inputOf(variant: VariantName): SiteCreationInput {
  const common = { runId: 'model-run', policy: POLICY, stepTimeoutMs: 5_000 };
  const configured = { team: 'site-editors', opsEmail: 'ops@example.gov.sg' };
  const resume = (mode: 'retry' | 'rollback', from: SiteCreationContext) => ({
    ...common,
    ...configured,
    delivery: null,
    resume: { mode, from, by: 'model-operator' },
  });

  switch (variant) {
    case 'full':
      return { ...common, ...configured, delivery: DELIVERY };
    case 'bare':
      return { ...common, delivery: DELIVERY };
    case 'retrySite':
      return resume('retry', earlierGo({}));
    case 'retryUser':
      return resume(
        'retry',
        earlierGo({ siteId: null, userId: null, attempted: { repo: false, app: false } }),
      );
    case 'rollback':
      return resume('rollback', earlierGo({}));
    default: {
      const unknown: never = variant;
      throw new Error(`unknown variant ${String(unknown)}`);
    }
  }
}

const CANCEL = { type: 'run.cancel', by: 'model-operator' } as const;

/**
 * The context facts guards read that a run gathers as it goes. A requested cancel counts only
 * where a cancel can still change the course (the forward steps).
 */
function runFacts(snapshot: ModelSnapshot): string[] {
  const { context } = snapshot;
  const cancelling = context.cancelledBy !== null && snapshot.can(CANCEL);

  return [
    context.attempted.repo ? 'repo' : '-',
    context.attempted.app ? 'app' : '-',
    context.siteId === null ? '-' : 'site',
    context.leftBehind.length > 0 ? 'left' : '-',
    context.requesterEmail === null ? '-' : 'mail',
    cancelling ? 'cancel' : '-',
  ];
}

/** The context facts guards read that come with the input: settings and resume mode. */
function settingFacts(snapshot: ModelSnapshot): string[] {
  const { context } = snapshot;

  return [
    context.team === null ? '-' : 'team',
    context.opsEmail === null ? '-' : 'ops',
    context.resumeMode ?? '-',
  ];
}

/** The state's value and exactly the context facts that some guard reads. */
export function serializeState(snapshot: ModelSnapshot): string {
  const facts = [...runFacts(snapshot), ...settingFacts(snapshot)];

  return `${JSON.stringify(snapshot.value)}|${facts.join(',')}`;
}

/**
 * A state as coverage counts it: without the settings and resume mode a variant is generated
 * for, so the same state reached under two settings counts once.
 */
export function coverageKey(snapshot: ModelSnapshot): string {
  return `${JSON.stringify(snapshot.value)}|${runFacts(snapshot).join(',')}`;
}

const EVENT_TABLE = actorEvents();

/**
 * Traversal options for `xstate/graph`. Its types admit only the machine's own events; the
 * done and error events of invoked actors are events the machine handles all the same.
 */
function traversal(variant: VariantName) {
  return {
    input: inputOf(variant),
    serializeState,
    events: (snapshot: ModelSnapshot) =>
      eventsFor(snapshot.children, EVENT_TABLE) as unknown as SiteCreationEvent[],
  };
}

/** A snapshot in one of the machine's final states. */
export function isFinal(snapshot: ModelSnapshot): boolean {
  return snapshot.status === 'done';
}

type Found = StatePath<ModelSnapshot, ModelEvent>;

const generated = new Map<string, ModelPath[]>();

/** Every simple path from the initial state to each final state (computed once). */
export function simplePaths(variant: VariantName): ModelPath[] {
  const known = generated.get(`simple:${variant}`);
  if (known) return known;

  const found = getSimplePaths(siteCreationMachine, {
    ...traversal(variant),
    toState: isFinal,
  }) as Found[];
  const paths = found.map((path): ModelPath => ({ variant, kind: 'simple', steps: path.steps }));
  generated.set(`simple:${variant}`, paths);

  return paths;
}

/** xstate's shortest path to every state the variant reaches (computed once). */
function shortestPaths(variant: VariantName): ModelPath[] {
  const known = generated.get(`shortest:${variant}`);
  if (known) return known;

  const found = getShortestPaths(siteCreationMachine, traversal(variant)) as Found[];
  const paths = found.map((path): ModelPath => ({ variant, kind: 'shortest', steps: path.steps }));
  generated.set(`shortest:${variant}`, paths);

  return paths;
}

interface Edge {
  from: string;
  to: string;
  event: ModelEvent;
  state: ModelSnapshot;
}

/** The state graph of a variant: nodes by serialized state, edges without self-loops. */
export interface StateGraph {
  variant: VariantName;
  initial: ModelSnapshot;
  nodes: Map<string, ModelSnapshot>;
  edges: Map<string, Edge[]>;
}

const graphs = new Map<VariantName, StateGraph>();

/** The state graph of a variant (computed once). */
export function stateGraph(variant: VariantName): StateGraph {
  const known = graphs.get(variant);
  if (known) return known;

  const adjacency: AdjacencyMap<ModelSnapshot, ModelEvent> = getAdjacencyMap(
    siteCreationMachine,
    traversal(variant),
  );
  const nodes = new Map<string, ModelSnapshot>();
  const edges = new Map<string, Edge[]>();
  for (const [from, value] of Object.entries(adjacency)) {
    nodes.set(from, value.state);
    const moves = Object.values(value.transitions) as Array<{
      event: ModelEvent;
      state: ModelSnapshot;
    }>;
    const out: Edge[] = moves
      .map(({ event, state }) => ({ from, to: serializeState(state), event, state }))
      .filter((edge) => edge.to !== from);
    edges.set(from, out);
  }
  // The traversal starts from the initial snapshot, so it is the map's first entry.
  const initial = Object.values(adjacency)[0]?.state;
  if (!initial) throw new Error(`the ${variant} variant has no initial state`);
  const graph = { variant, initial, nodes, edges };
  graphs.set(variant, graph);

  return graph;
}

/** An edge the service can be made to take, and that leads to no further wait. */
function usable(edge: Edge, source: ModelSnapshot, waits: boolean, kind: DatabaseKind): boolean {
  if (edgeReason(source, edge.event, kind) !== undefined) return false;

  return waits || !leafOf(edge.state).endsWith('.waiting');
}

/** Breadth-first: the fewest usable edges from `from` to a node that satisfies `goal`. */
export function bfs(
  graph: StateGraph,
  from: string,
  goal: (key: string) => boolean,
  waits: boolean,
  kind: DatabaseKind,
): Edge[] | undefined {
  const previous = new Map<string, Edge | null>([[from, null]]);
  const queue = [from];
  for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
    if (goal(key)) {
      const route: Edge[] = [];
      for (let edge = previous.get(key); edge; edge = previous.get(edge.from)) route.unshift(edge);

      return route;
    }
    const source = graph.nodes.get(key);
    for (const edge of graph.edges.get(key) ?? []) {
      if (previous.has(edge.to) || !source || !usable(edge, source, waits, kind)) continue;
      previous.set(edge.to, edge);
      queue.push(edge.to);
    }
  }

  return undefined;
}

export function finalGoal(graph: StateGraph) {
  return (key: string) => {
    const node = graph.nodes.get(key);

    return node !== undefined && isFinal(node);
  };
}

export function toPath(graph: StateGraph, kind: ModelPath['kind'], route: Edge[]): ModelPath {
  const init = { type: 'xstate.init' } as unknown as ModelEvent;

  return {
    variant: graph.variant,
    kind,
    steps: [
      { event: init, state: graph.initial },
      ...route.map((edge) => ({ event: edge.event, state: edge.state })),
    ],
  };
}

function routeOf(graph: StateGraph, path: ModelPath): Edge[] | undefined {
  const route: Edge[] = [];
  let key = serializeState(graph.initial);
  for (const step of path.steps.slice(1)) {
    const to = serializeState(step.state);
    const edge = (graph.edges.get(key) ?? []).find(
      (e) => e.to === to && JSON.stringify(e.event) === JSON.stringify(step.event),
    );
    if (!edge) return undefined;
    route.push(edge);
    key = to;
  }

  return route;
}

/** Goes on from the end of `route` to a final state, by the fewest edges that wait no more. */
function extend(graph: StateGraph, route: Edge[], kind: DatabaseKind): Edge[] | undefined {
  const end = route[route.length - 1]?.to ?? serializeState(graph.initial);
  const tail = bfs(graph, end, finalGoal(graph), false, kind);

  return tail ? [...route, ...tail] : undefined;
}

/**
 * A shortest path to each state not `targeted` yet, extended to a final state; and the states
 * no usable path reaches.
 */
export function shortestExtended(
  graph: StateGraph,
  targeted: Set<string>,
  kind: DatabaseKind,
): { paths: ModelPath[]; unreached: ModelSnapshot[] } {
  const paths: ModelPath[] = [];
  const unreached: ModelSnapshot[] = [];
  const start = serializeState(graph.initial);

  for (const found of shortestPaths(graph.variant)) {
    const last = found.steps[found.steps.length - 1]?.state ?? graph.initial;
    if (targeted.has(coverageKey(last))) continue;
    targeted.add(coverageKey(last));
    const target = serializeState(last);
    let route = routeOf(graph, found);
    const blocked = route?.some((edge) => {
      const source = graph.nodes.get(edge.from);

      return !source || !usable(edge, source, true, kind);
    });
    if (!route || blocked) route = bfs(graph, start, (key) => key === target, true, kind);
    const whole = route ? extend(graph, route, kind) : undefined;
    if (whole) paths.push(toPath(graph, 'shortest', whole));
    else unreached.push(last);
  }

  return { paths, unreached };
}

/** For each retry loop of the variant: to its source, around it once, then on to the end. */
export function loopPaths(graph: StateGraph, kind: DatabaseKind): Map<string, ModelPath> {
  const loops = new Map<string, ModelPath>();
  const start = serializeState(graph.initial);
  for (const [from, edges] of graph.edges) {
    const source = graph.nodes.get(from);
    if (!source) continue;
    for (const edge of edges) {
      const waiting = leafOf(edge.state);
      if (!waiting.endsWith('.waiting') || loops.has(waiting)) continue;
      const back = (graph.edges.get(edge.to) ?? []).find(
        (e) => e.to === from && e.event.type.startsWith('xstate.done.'),
      );
      const to = bfs(graph, start, (key) => key === from, false, kind);
      if (!back || !to) continue;
      const whole = extend(graph, [...to, edge, back], kind);
      if (whole) loops.set(waiting, toPath(graph, 'loop', whole));
    }
  }

  return loops;
}

/** The edges a path walks, as `from|event|to` by coverage key. */
export function edgeKeys(path: ModelPath): string[] {
  const keys: string[] = [];
  for (let i = 1; i < path.steps.length; i += 1) {
    const from = path.steps[i - 1]?.state;
    const step = path.steps[i];
    if (!from || !step) continue;
    const event = JSON.stringify(step.event);
    keys.push(`${coverageKey(from)}|${event}|${coverageKey(step.state)}`);
  }

  return keys;
}

export function pathKey(path: ModelPath): string {
  return `${path.variant}|${path.steps.map((s) => JSON.stringify(s.event)).join('>')}`;
}

