/**
 * The statechart as an SVG drawn on the server: one box per state an operator cares about (a
 * step's running/waiting/deciding leaves fold into the step), the compound phases as frames
 * around their steps, every transition of the machine as a faint line, and a run's own path,
 * visited states and current state marked on top. The layout is derived from the machine, so
 * the picture follows it when states are added.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { STEP_OF_STATE } from '../../../machines/site-creation.machine.js';
import { eventLabel, forEachTransition } from '../../visualize.js';
import { html, raw, type SafeHtml } from './html.js';

/** A box: a state, or a frame around a phase's states. */
export interface ChartBox {
  /** The state's dotted path, e.g. `creatingRepo.creatingRepository`. */
  id: string;
  key: string;
  kind: 'state' | 'group';
  /** The step a state runs, when it runs one. */
  step: string | undefined;
  final: boolean;
  initial: boolean;
  x: number;
  y: number;
  width: number;
  height: number;
  /** The machine's transitions out of this box, as `target: event [guard]`. */
  exits: string[];
  /** For states inside a frame: the frame's id. */
  parent: string | undefined;
}

export interface Chart {
  boxes: ChartBox[];
  /** Every pair of boxes a transition connects (self-loops left out). */
  edges: Array<{ from: string; to: string }>;
  width: number;
  height: number;
  /** The box a (possibly leaf-level) dotted state path shows as; undefined when unknown. */
  boxOf(path: string): string | undefined;
}

/** How the run's current state is drawn. */
export type CurrentTone = 'running' | 'waiting' | 'done' | 'failed';

/** What a run has done, in the chart's terms. */
export interface ChartMarks {
  visited: ReadonlySet<string>;
  current: string | undefined;
  tone: CurrentTone;
  /** Transitions the run took, between boxes, without repeats. */
  path: Array<{ from: string; to: string }>;
}

const CELL_WIDTH = 140;
const CELL_HEIGHT = 46;
const GAP_X = 16;
const GAP_Y = 30;
const FRAME_PAD = 10;
const FRAME_LABEL = 20;
const MARGIN = 16;
/** Nine states to a row, or a frame and the states beside it. */
const ROW_WIDTH = 9 * CELL_WIDTH + 8 * GAP_X + 2 * FRAME_PAD;

/** A state drawn as one box: it runs a step, or it has no children. */
function isBox(node: AnyStateNode): boolean {
  return (
    node.states.running !== undefined ||
    node.invoke.length > 0 ||
    Object.keys(node.states).length === 0
  );
}

function idOf(node: AnyStateNode): string {
  return node.path.join('.');
}

/** The box a node belongs to: its outermost ancestor (or itself) drawn as a box, else itself. */
function ownerOf(node: AnyStateNode): AnyStateNode {
  let owner = node;
  for (let current: AnyStateNode | undefined = node; current; current = current.parent) {
    if (current.parent && isBox(current)) owner = current;
  }

  return owner;
}

/** Leaves of a frame, in declaration order, descending through nested frames. */
function boxesWithin(node: AnyStateNode): AnyStateNode[] {
  return Object.values(node.states).flatMap((child) =>
    isBox(child) ? [child] : boxesWithin(child),
  );
}

function walkTransitions(
  node: AnyStateNode,
  visit: (from: AnyStateNode, to: AnyStateNode, label: string) => void,
): void {
  forEachTransition(node, ({ from, to, eventType, guard }) => {
    const base = eventLabel(eventType, from);
    visit(from, to, guard ? `${base} [${guard}]` : base);
  });
}

/** Lays the machine out once; the result is reused for every run page. */
export function layoutChart(machine: AnyStateMachine): Chart {
  const root = machine.root;
  const boxes: ChartBox[] = [];
  const byId = new Map<string, ChartBox>();
  const initialKey = typeof root.config.initial === 'string' ? root.config.initial : undefined;

  const place = (
    node: AnyStateNode,
    kind: ChartBox['kind'],
    at: { x: number; y: number; width: number; height: number },
    parent?: string,
  ) => {
    const id = idOf(node);
    const box: ChartBox = {
      id,
      key: node.key,
      kind,
      step: STEP_OF_STATE[id],
      final: node.type === 'final',
      initial: node.parent === root && node.key === initialKey,
      ...at,
      exits: [],
      parent,
    };
    boxes.push(box);
    byId.set(id, box);
  };

  let x = MARGIN;
  let y = MARGIN;
  let rowHeight = 0;
  for (const node of Object.values(root.states)) {
    const inner = isBox(node) ? [] : boxesWithin(node);
    const width = isBox(node)
      ? CELL_WIDTH
      : inner.length * CELL_WIDTH + (inner.length - 1) * GAP_X + 2 * FRAME_PAD;
    const height = isBox(node) ? CELL_HEIGHT : CELL_HEIGHT + 2 * FRAME_PAD + FRAME_LABEL;
    if (x > MARGIN && x + width > MARGIN + ROW_WIDTH) {
      x = MARGIN;
      y += rowHeight + GAP_Y;
      rowHeight = 0;
    }

    if (isBox(node)) {
      // Level with the states inside frames, so a row's boxes line up.
      place(node, 'state', { x, y: y + FRAME_LABEL + FRAME_PAD, width, height: CELL_HEIGHT });
    } else {
      place(node, 'group', { x, y, width, height });
      inner.forEach((child, index) => {
        const childX = x + FRAME_PAD + index * (CELL_WIDTH + GAP_X);
        const childY = y + FRAME_LABEL + FRAME_PAD;
        const at = { x: childX, y: childY, width: CELL_WIDTH, height: CELL_HEIGHT };
        place(child, 'state', at, idOf(node));
      });
    }

    x += width + GAP_X;
    rowHeight = Math.max(rowHeight, CELL_HEIGHT + 2 * FRAME_PAD + FRAME_LABEL);
  }

  const edges: Chart['edges'] = [];
  const seen = new Set<string>();
  walkTransitions(root, (fromNode, toNode, label) => {
    const from = ownerOf(fromNode);
    const to = ownerOf(toNode);
    const fromBox = byId.get(idOf(from));
    if (!fromBox) return;

    const exit = from === to ? `↻ ${label.includes('canRetry') ? 'retry' : label}` : null;
    const line = exit ?? `→ ${idOf(to)}: ${label}`;
    if (!fromBox.exits.includes(line)) fromBox.exits.push(line);
    if (from === to) return;

    const key = `${idOf(from)}>${idOf(to)}`;
    if (seen.has(key) || !byId.has(idOf(to))) return;
    seen.add(key);
    edges.push({ from: idOf(from), to: idOf(to) });
  });

  const boxOf = (path: string): string | undefined => {
    let node: AnyStateNode | undefined = root;
    for (const key of path.split('.')) {
      node = node.states[key];
      if (!node) return undefined;
      if (isBox(node)) return idOf(node);
    }

    return node === root ? undefined : idOf(node);
  };

  return { boxes, edges, width: MARGIN * 2 + ROW_WIDTH, height: y + rowHeight + MARGIN, boxOf };
}

/** One entry of a run's history, as the chart reads it. */
export interface ChartEvent {
  type: string;
  state: string | null;
}

/**
 * Where a run has been. `run.accepted` implies `starting` and `authenticating` (the webhook
 * ran them before the run was recorded). A finished go ends the path: an operator's retry or
 * rollback starts a new go, which is no transition out of the old go's final state. (A cancel
 * is one, `run.cancel`, and the path goes on through it.)
 */
export function marksOf(
  chart: Chart,
  run: { state: string; status: string; history: readonly ChartEvent[] },
): ChartMarks {
  const visited = new Set<string>();
  const path: ChartMarks['path'] = [];
  const taken = new Set<string>();
  let previous: string | undefined;

  const enter = (state: string) => {
    const box = chart.boxOf(state);
    if (!box) return;
    visited.add(box);
    const parent = chart.boxes.find((candidate) => candidate.id === box)?.parent;
    if (parent) visited.add(parent);
    if (previous && previous !== box && !taken.has(`${previous}>${box}`)) {
      taken.add(`${previous}>${box}`);
      path.push({ from: previous, to: box });
    }
    previous = box;
  };

  for (const event of run.history) {
    if (event.type === 'run.finished') previous = undefined;
    if (event.type === 'run.accepted') {
      for (const state of ['starting', 'authenticating', 'accepted']) enter(state);
    }
    if (event.type === 'state.entered' && event.state) enter(event.state);
  }

  const current = chart.boxOf(run.state);
  if (current) visited.add(current);

  return { visited, current, tone: toneOf(run.status, run.state), path };
}

function toneOf(status: string, state: string): CurrentTone {
  if (status === 'succeeded') return 'done';
  if (status === 'running') return state.endsWith('.waiting') ? 'waiting' : 'running';

  return 'failed';
}

interface Point {
  x: number;
  y: number;
}

function centre(box: ChartBox): Point {
  return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
}

/** Where the line from the box's centre towards `to` leaves the box. */
function border(box: ChartBox, to: Point): Point {
  const from = centre(box);
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  const scaleX = dx === 0 ? Infinity : box.width / 2 / Math.abs(dx);
  const scaleY = dy === 0 ? Infinity : box.height / 2 / Math.abs(dy);
  const scale = Math.min(scaleX, scaleY, 1);

  return { x: from.x + dx * scale, y: from.y + dy * scale };
}

/** How high an arc between two states of one row rises above them. */
const ARC_LIFT = 40;

/**
 * A connector from one box to another: straight, unless both sit on one row with states in
 * between, when a straight line would seem to pass through those; then an arc above the row.
 */
function connector(
  from: ChartBox,
  to: ChartBox,
  states: readonly ChartBox[],
  className: string,
  marker: boolean,
): SafeHtml {
  const a = centre(from);
  const b = centre(to);
  const left = Math.min(from.x, to.x);
  const right = Math.max(from.x, to.x);
  const hidden =
    a.y === b.y &&
    states.some(
      (box) => box !== from && box !== to && centre(box).y === a.y && box.x > left && box.x < right,
    );
  const head = marker ? raw(' marker-end="url(#chart-arrow)"') : '';

  if (!hidden) {
    const start = border(from, b);
    const end = border(to, a);

    return html`<path class="${className}" d="M ${start.x.toFixed(1)} ${start.y.toFixed(1)}
    L ${end.x.toFixed(1)} ${end.y.toFixed(1)}"${head}/>`;
  }

  const towards = b.x > a.x ? 1 : -1;
  const startX = a.x + (towards * from.width) / 4;
  const endX = b.x - (towards * to.width) / 4;
  const lift = Math.min(from.y, to.y) - ARC_LIFT;

  return html`<path class="${className}" d="M ${startX} ${from.y}
    Q ${(startX + endX) / 2} ${lift} ${endX} ${to.y}"${head}/>`;
}

function boxClasses(box: ChartBox, marks: ChartMarks): string {
  const classes = ['chart-state'];
  if (box.final) classes.push('final');
  if (marks.visited.has(box.id)) classes.push('visited');
  if (marks.current === box.id) classes.push('current', `tone-${marks.tone}`);

  return classes.join(' ');
}

function renderState(box: ChartBox, marks: ChartMarks): SafeHtml {
  const tooltip = [box.id, box.step ? `step: ${box.step}` : '', ...box.exits]
    .filter((text) => text !== '')
    .join('\n');
  const middle = box.x + box.width / 2;
  const middleY = box.y + box.height / 2;
  const labelY = box.step ? box.y + 20 : middleY + 4;
  const current = marks.current === box.id;

  return html`<g class="${boxClasses(box, marks)}" data-state="${box.id}"${
    current ? raw(' aria-current="step"') : ''
  }>
  <title>${tooltip}</title>
  <rect x="${box.x}" y="${box.y}" width="${box.width}" height="${box.height}" rx="8"/>
  ${
    box.final
      ? html`<rect class="inner" x="${box.x + 3}" y="${box.y + 3}" width="${box.width - 6}"
    height="${box.height - 6}" rx="6"/>`
      : ''
  }
  ${box.initial ? html`<circle class="initial" cx="${box.x - 6}" cy="${middleY}" r="4"/>` : ''}
  <text x="${middle}" y="${labelY}">${box.key}</text>
  ${box.step ? html`<text class="step" x="${middle}" y="${box.y + 36}">${box.step}</text>` : ''}
</g>`;
}

function renderGroup(box: ChartBox, marks: ChartMarks): SafeHtml {
  const classes = ['chart-group', marks.visited.has(box.id) ? 'visited' : ''].join(' ').trim();

  return html`<g class="${classes}" data-state="${box.id}">
  <title>${[box.id, ...box.exits].join('\n')}</title>
  <rect x="${box.x}" y="${box.y}" width="${box.width}" height="${box.height}" rx="10"/>
  <text x="${box.x + 10}" y="${box.y + 16}">${box.key}</text>
</g>`;
}

/** The chart with a run's marks, as inline SVG (no scripts, no external references). */
export function renderChart(chart: Chart, marks: ChartMarks): SafeHtml {
  const byId = new Map(chart.boxes.map((box) => [box.id, box]));
  const pairs = (list: Chart['edges']) =>
    list.flatMap(({ from, to }) => {
      const a = byId.get(from);
      const b = byId.get(to);

      return a && b ? [[a, b] as const] : [];
    });
  const currentLabel = marks.current ?? 'unknown';
  const states = chart.boxes.filter((box) => box.kind === 'state');
  const edges = pairs(chart.edges).map(([a, b]) => connector(a, b, states, 'chart-edge', false));
  const taken = pairs(marks.path).map(([a, b]) => connector(a, b, states, 'chart-taken', true));

  return html`<svg class="chart" role="img" aria-labelledby="chart-title"
  viewBox="0 0 ${chart.width} ${chart.height}">
<title id="chart-title">Statechart; the run is in ${currentLabel}</title>
<defs>
  <marker id="chart-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
    markerHeight="7" orient="auto-start-reverse">
    <path d="M 0 0 L 10 5 L 0 10 z" class="chart-arrow-head"/>
  </marker>
</defs>
${chart.boxes.filter((box) => box.kind === 'group').map((box) => renderGroup(box, marks))}
<g class="chart-edges">${edges}</g>
<g class="chart-path">${taken}</g>
${states.map((box) => renderState(box, marks))}
</svg>`;
}

/** Every leaf state's dotted path, grouped by its top-level state, for the state filter. */
export function leafStates(machine: AnyStateMachine): Array<{ group: string; paths: string[] }> {
  const leaves = (node: AnyStateNode): string[] =>
    Object.keys(node.states).length === 0
      ? [idOf(node)]
      : Object.values(node.states).flatMap(leaves);

  return Object.values(machine.root.states).map((node) => ({
    group: node.key,
    paths: leaves(node),
  }));
}
