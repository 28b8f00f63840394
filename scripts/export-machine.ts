/**
 * Writes the machine's pictures: docs/machine.json (for the XState visualiser and the Stately
 * editor), docs/machine.mmd (Mermaid), and the diagram in README.md between its markers.
 * `npm run export` runs it; a test fails when the committed files are out of date.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { siteCreationMachine } from '../machines/site-creation.machine.js';
import { replaceDiagram, toDefinitionJson, toMermaid } from '../src/visualize.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = process.argv[2] ?? join(root, 'docs');

await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, 'machine.json'), toDefinitionJson(siteCreationMachine));
await writeFile(join(outDir, 'machine.mmd'), toMermaid(siteCreationMachine));

const readmePath = join(root, 'README.md');
const readme = await readFile(readmePath, 'utf8');
await writeFile(readmePath, replaceDiagram(readme, toMermaid(siteCreationMachine)));
process.stdout.write(`wrote ${outDir}/machine.json, ${outDir}/machine.mmd and README.md\n`);
