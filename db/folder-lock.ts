/**
 * PGlite serves one process at a time, and nothing in it stops a second process from opening
 * the same folder: both would start, and each would silently lose the other's writes. A lock
 * file holding the owner's pid refuses the second process with a clear error. A lock left by a
 * process that no longer exists (killed, crashed) is taken over.
 */
import { open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

const LOCK_FILE = 'site-orchestrator.lock';

/** Raised when another live process holds the folder. */
export class FolderInUseError extends Error {
  override name = 'FolderInUseError';
}

/** Takes the folder's lock; the returned function gives it back. */
export async function lockFolder(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);

  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();

      return async () => {
        const owner = await readOwner(path);
        if (owner === process.pid) await unlink(path).catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }

    const owner = await readOwner(path);
    if (owner !== undefined && owner !== process.pid && isAlive(owner)) {
      throw new FolderInUseError(
        `the PGlite folder ${dir} is in use by process ${owner}; PGlite serves one process ` +
          'at a time: stop that process first, or set DATABASE_URL to share PostgreSQL',
      );
    }
    if (owner === process.pid) {
      throw new FolderInUseError(`the PGlite folder ${dir} is already open in this process`);
    }
    // The owner is gone (or the file is half written): take the lock over.
    await unlink(path).catch(() => undefined);
  }

  throw new FolderInUseError(`could not take the lock on the PGlite folder ${dir}`);
}

async function readOwner(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number.parseInt(text, 10);

  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);

    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
