// Files that must survive a crash, a full disk and power loss whole or not at all: the exported
// wg-quick file and any file holding a key. A new version is written in full to a temporary
// file (every write's length checked: a short write is an error, not a smaller file), fsync'd,
// renamed over the old one, and the directory fsync'd so the rename itself is on disk. Any
// failure removes the temporary file and leaves the old version in place.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

function writeAll(fd: number, data: Buffer): void {
  for (let off = 0; off < data.length;) {
    const n = writeSync(fd, data, off, data.length - off);
    if (n <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    off += n;
  }
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces `path` with `text`, created with `mode` from its first byte (never chmod-ed, so no
 * other user can open it in between). The caller holds the state lock: the temporary name is
 * fixed, and a leftover from a killed writer is removed first.
 */
export function writeFileDurably(path: string, text: string, mode = 0o600): void {
  const tmp = `${path}.tmp`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeAll(fd, Buffer.from(text, 'utf8'));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(dirname(path));
}
