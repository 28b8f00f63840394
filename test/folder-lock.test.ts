import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../db/database.js';
import { FolderInUseError, lockFolder } from '../db/folder-lock.js';

describe('one process per PGlite folder', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pglite-lock-'));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a second opening of a folder that is in use', async () => {
    const first = await openDatabase({ pgliteDir: dir });

    await expect(openDatabase({ pgliteDir: dir })).rejects.toThrow(FolderInUseError);

    await first.close();
    const again = await openDatabase({ pgliteDir: dir });
    await again.close();
  });

  it('names the live process that holds the folder', async () => {
    // The parent of this test process is alive for as long as the test runs.
    await writeFile(join(dir, 'site-orchestrator.lock'), String(process.ppid));

    await expect(lockFolder(dir)).rejects.toThrow(`in use by process ${process.ppid}`);
  });

  it('takes over the lock of a process that no longer exists', async () => {
    await writeFile(join(dir, 'site-orchestrator.lock'), '2147483646');

    const unlock = await lockFolder(dir);

    expect(await readFile(join(dir, 'site-orchestrator.lock'), 'utf8')).toBe(String(process.pid));
    await unlock();
  });
});
