/**
 * Pictures of the machine, generated from its definition: a Mermaid state diagram for the
 * README and the dashboard, and the JSON definition the XState visualiser and Stately editor
 * import. Nothing here is written by hand, so the pictures cannot drift from the machine.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

interface Edge {
  from: string;
  to: string;
  label: string;
}

/** A state that runs a step shows as one node; its running/waiting/deciding leaves fold in. */
function isStepNode(node: AnyStateNode): boolean {
  return node.states.running !== undefined || node.invoke.length > 0;
}

/** The node a state shows as: itself, or the step it belongs to. */
function visibleOf(node: AnyStateNode): AnyStateNode {
  let current: AnyStateNode | undefined = node;
  let visible = node;
  while (current) {
    if (isStepNode(current)) visible = current;
    current = current.parent;
  }

  return visible;
}

function idOf(node: AnyStateNode): string {
  return node.path.join('_');
}

/** The name of a transition's guard, when it has one. */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && guard !== null && 'type' in guard) {
    return String((guard as { type: unknown }).type);
  }

  return 'guard';
}

/** A transition's event in words: `createRepository done`, `run.cancel`, `always`. */
export function eventLabel(eventType: string, node: AnyStateNode): string {
  const src = node.invoke[0]?.src;
  const actor = typeof src === 'string' ? src : 'step';
  if (eventType.startsWith('xstate.done.actor.')) return `${actor} done`;
  if (eventType.startsWith('xstate.error.actor.')) return `${actor} failed`;
  if (eventType.startsWith('xstate.done.state.')) return 'all done';
  if (eventType === '') return 'always';

  return eventType;
}

export interface TransitionVisit {
  from: AnyStateNode;
  to: AnyStateNode;
  /** The raw event type; '' for eventless (`always`) transitions. */
  eventType: string;
  guard: string | undefined;
}

type TransitionList = ReadonlyArray<{ target?: readonly AnyStateNode[]; guard?: unknown }>;

/** Calls `visit` for every transition of `node` and its descendants, one per target. */
export function forEachTransition(node: AnyStateNode, visit: (t: TransitionVisit) => void): void {
  const lists: Array<[string, TransitionList]> = [
    ...node.transitions.entries(),
    ['', node.always ?? []],
  ];
  for (const [eventType, list] of lists) {
    for (const transition of list) {
      for (const to of transition.target ?? []) {
        visit({ from: node, to, eventType, guard: guardName(transition.guard) });
      }
    }
  }

  for (const child of Object.values(node.states)) forEachTransition(child, visit);
}

function collectEdges(root: AnyStateNode): Edge[] {
  const edges: Edge[] = [];
  forEachTransition(root, ({ from: source, to: target, eventType, guard }) => {
    const from = visibleOf(source);
    const to = visibleOf(target);
    if (to === from) {
      if (guard === 'canRetry') edges.push({ from: idOf(from), to: idOf(to), label: 'retry' });

      return;
    }
    const skipped = eventType === '' && guard === undefined && isStepNode(from);
    const base = skipped ? 'skipped' : eventLabel(eventType, source);
    edges.push({ from: idOf(from), to: idOf(to), label: guard ? `${base} [${guard}]` : base });
  });

  return edges;
}

function declare(node: AnyStateNode, indent: string, lines: string[]): void {
  for (const child of Object.values(node.states)) {
    const id = idOf(child);
    if (isStepNode(child) || Object.keys(child.states).length === 0) {
      lines.push(`${indent}state "${child.key}" as ${id}`);
      if (child.type === 'final') lines.push(`${indent}${id} --> [*]`);
      continue;
    }
    lines.push(`${indent}state "${child.key}" as ${id} {`);
    const initial = child.config.initial;
    if (typeof initial === 'string' && child.states[initial]) {
      lines.push(`${indent}  [*] --> ${idOf(child.states[initial])}`);
    }
    declare(child, `${indent}  `, lines);
    lines.push(`${indent}}`);
  }
}

/** A Mermaid `stateDiagram-v2` of the machine, retries folded into their steps. */
export function toMermaid(machine: AnyStateMachine): string {
  const root = machine.root;
  const lines = ['stateDiagram-v2'];
  const initial = root.config.initial;
  if (typeof initial === 'string' && root.states[initial]) {
    lines.push(`  [*] --> ${idOf(root.states[initial])}`);
  }
  declare(root, '  ', lines);

  const edges = collectEdges(root);
  const seen = new Set<string>();
  for (const edge of edges) {
    const key = `${edge.from}|${edge.to}|${edge.label}`;
    if (seen.has(key)) continue;
    seen.add(key);
    lines.push(`  ${edge.from} --> ${edge.to}: ${edge.label}`);
  }

  return `${lines.join('\n')}\n`;
}

/** The machine's JSON definition, as the XState visualiser and Stately editor import it. */
export function toDefinitionJson(machine: AnyStateMachine): string {
  return `${JSON.stringify(machine.toJSON(), null, 2)}\n`;
}

export const DIAGRAM_START = '<!-- machine-diagram:start (generated by npm run export) -->';
export const DIAGRAM_END = '<!-- machine-diagram:end -->';

/** Puts the diagram between the README's markers; throws when the markers are missing. */
export function replaceDiagram(readme: string, mermaid: string): string {
  const start = readme.indexOf(DIAGRAM_START);
  const end = readme.indexOf(DIAGRAM_END);
  if (start < 0 || end < start) throw new Error('README.md has no machine diagram markers');

  const block = `${DIAGRAM_START}\n\`\`\`mermaid\n${mermaid}\`\`\`\n`;

  return readme.slice(0, start) + block + readme.slice(end);
}
