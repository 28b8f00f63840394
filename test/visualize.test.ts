/**
 * The machine's pictures are generated, never drawn: README.md's diagram, docs/machine.mmd and
 * docs/machine.json must be what the machine generates now (`npm run export` or
 * `npm run cli -- export` rewrites them), and the diagram must show every state.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AnyStateNode } from 'xstate';
import { describe, expect, it } from 'vitest';
import { siteCreationMachine } from '../machines/site-creation.machine.js';
import {
  DIAGRAM_END,
  DIAGRAM_START,
  replaceDiagram,
  toDefinitionJson,
  toMermaid,
} from '../src/visualize.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const STALE = 'out of date: run `npm run export` and commit the result';

/** Every state node below the root, depth first. */
function allStates(node: AnyStateNode): AnyStateNode[] {
  return Object.values(node.states).flatMap((child) => [child, ...allStates(child)]);
}

/** Step states fold their running/waiting/deciding leaves into one node of the diagram. */
function isFoldedIntoStep(node: AnyStateNode): boolean {
  const parent = node.parent;
  if (!parent || parent === siteCreationMachine.root) return false;

  return parent.states.running !== undefined || parent.invoke.length > 0;
}

describe('the machine diagrams', () => {
  it('README.md shows the diagram the machine generates now', async () => {
    const readme = await readFile(join(root, 'README.md'), 'utf8');

    const regenerated = replaceDiagram(readme, toMermaid(siteCreationMachine));

    expect(readme, STALE).toContain(DIAGRAM_START);
    expect(readme, STALE).toContain(DIAGRAM_END);
    expect(readme === regenerated, STALE).toBe(true);
  });

  it('docs/machine.mmd is the Mermaid diagram the machine generates now', async () => {
    const committed = await readFile(join(root, 'docs', 'machine.mmd'), 'utf8');

    const generated = toMermaid(siteCreationMachine);

    expect(committed === generated, STALE).toBe(true);
  });

  it('docs/machine.json is the definition the machine generates now', async () => {
    const committed = await readFile(join(root, 'docs', 'machine.json'), 'utf8');

    const generated = toDefinitionJson(siteCreationMachine);

    expect(committed === generated, STALE).toBe(true);
    expect(JSON.parse(committed)).toMatchObject({ id: siteCreationMachine.id });
  });

  it('names every state of the machine in the Mermaid diagram', () => {
    const states = allStates(siteCreationMachine.root);

    const mermaid = toMermaid(siteCreationMachine);

    const shown = states.filter((node) => !isFoldedIntoStep(node));
    expect(shown.length).toBeGreaterThan(30);
    for (const node of shown) {
      const declaration = `state "${node.key}" as ${node.path.join('_')}`;
      expect(mermaid, node.path.join('.')).toContain(declaration);
    }
    for (const node of states.filter(isFoldedIntoStep)) {
      expect(mermaid, node.path.join('.')).toContain(`as ${node.parent?.path.join('_')}`);
    }
  });

  it('notices a README whose diagram differs from the machine', async () => {
    const readme = await readFile(join(root, 'README.md'), 'utf8');
    const tampered = readme.replace('state "creatingSite" as creatingSite', 'state "x" as x');

    const regenerated = replaceDiagram(tampered, toMermaid(siteCreationMachine));

    expect(tampered).not.toBe(readme);
    expect(regenerated).toBe(readme);
  });
});
