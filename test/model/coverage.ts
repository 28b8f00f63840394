/**
 * The machine's states and transitions, and which of them a path walks. A path is traced on
 * the real machine definition, its actors replaced by ones that never settle, by sending its
 * events and reading the transitions each microstep took from XState's inspection events; so
 * eventless transitions (`always`) and the `onDone` of compound states are counted too.
 */
import {
  createActor,
  fromPromise,
  type AnyStateNode,
  type AnyTransitionDefinition,
  type InspectionEvent,
} from 'xstate';
import { getStateNodes } from 'xstate/graph';
import type { DatabaseKind } from '../../db/database.js';
import { siteCreationMachine } from '../../machines/site-creation.machine.js';
import { invokeSites, pathOf } from './events.js';
import { inputOf, serializeState, type ModelPath } from './paths.js';
import type { UnreplayableReason } from './scenario.js';

/** Everything coverage counts: state node ids and transition labels. */
export interface Inventory {
  states: string[];
  transitions: string[];
}

const SRC_OF_INVOKE = new Map(invokeSites().map((site) => [site.id, site.src]));

function eventLabel(eventType: string): string {
  if (eventType === '') return 'always';
  const done = /^xstate\.done\.actor\.(.+)$/.exec(eventType);
  if (done?.[1]) return `done(${SRC_OF_INVOKE.get(done[1]) ?? done[1]})`;
  const error = /^xstate\.error\.actor\.(.+)$/.exec(eventType);
  if (error?.[1]) return `error(${SRC_OF_INVOKE.get(error[1]) ?? error[1]})`;
  if (eventType.startsWith('xstate.done.state.')) return 'done(children)';

  return eventType;
}

function guardLabel(transition: AnyTransitionDefinition): string {
  const guard: unknown = transition.guard;
  if (guard === undefined) return '';
  if (typeof guard === 'string') return ` [${guard}]`;
  if (guard !== null && typeof guard === 'object' && 'type' in guard) {
    return ` [${String((guard as { type: unknown }).type)}]`;
  }

  return ' [guard]';
}

/** `creatingSite.running error(createSite) [canRetry] -> creatingSite.waiting` */
export function transitionLabel(transition: AnyTransitionDefinition): string {
  const source = pathOf(transition.source) || '(root)';
  const targets = (transition.target ?? []).map((t: AnyStateNode) => pathOf(t)).join(', ');

  return `${source} ${eventLabel(transition.eventType)}${guardLabel(transition)} -> ${
    targets || '(stay)'
  }`;
}

/**
 * The states and transitions no replayable path can walk, and why (see UNREPLAYABLE). The
 * coverage gate fails on anything else that goes unwalked, and on any of these that is walked.
 */
export function cannotBeWalked(item: string, kind: DatabaseKind): UnreplayableReason | undefined {
  if (item.startsWith('validating error(validateRequest)')) return 'validateError';
  if (/\.waiting error\(sleep\) -> /.test(item)) return 'sleepError';
  const cancelInDbStep = DB_CANCEL.some((source) =>
    item.startsWith(`${source} run.cancel `) || item.startsWith(`${source} done(`) &&
      item.includes('[cancelRequested]') || item.startsWith(`${source} error(`) &&
      item.includes('[cancelRequested]'),
  );
  if (kind === 'pglite' && cancelInDbStep) return 'cancelDbStep';

  return undefined;
}

/** The running states of the forward steps that only write to the database. */
const DB_CANCEL = [
  'creatingSite.running',
  'creatingRepo.recordingRepo.running',
  'creatingAmplify.recordingDeployment.running',
  'completing.running',
];

/** Every state and transition of the machine. */
export function machineInventory(): Inventory {
  const nodes = getStateNodes(siteCreationMachine.root);
  const transitions = nodes.flatMap((node) => [
    ...[...node.transitions.values()].flat(),
    ...(node.always ?? []),
  ]);

  return {
    states: nodes.map((node) => pathOf(node)),
    transitions: transitions.map(transitionLabel),
  };
}

const NEVER = fromPromise(() => new Promise<never>(() => undefined));

const tracedMachine = siteCreationMachine.provide({
  actors: Object.fromEntries(
    Object.keys(siteCreationMachine.implementations.actors).map((name) => [name, NEVER]),
  ) as Parameters<typeof siteCreationMachine.provide>[0]['actors'],
});

/** The states and transitions a path walks; throws if the machine does not follow it. */
export function trace(path: ModelPath): Inventory {
  const states = new Set<string>();
  const transitions = new Set<string>();
  const inspect = (event: InspectionEvent) => {
    if (event.type !== '@xstate.microstep') return;
    for (const transition of event._transitions) {
      transitions.add(transitionLabel(transition));
      states.add(pathOf(transition.source));
    }
    const snapshot = event.snapshot as unknown as { _nodes: AnyStateNode[] };
    for (const node of snapshot._nodes) {
      if (node.path.length > 0) states.add(pathOf(node));
    }
  };

  const actor = createActor(tracedMachine, { input: inputOf(path.variant), inspect });
  actor.start();
  for (const step of path.steps.slice(1)) actor.send(step.event as never);
  const end = actor.getSnapshot();
  actor.stop();

  const expected = path.steps[path.steps.length - 1]?.state;
  if (expected && serializeState(end as never) !== serializeState(expected)) {
    throw new Error(`the machine left the path: ${serializeState(end as never)}`);
  }

  return { states: [...states], transitions: [...transitions] };
}
