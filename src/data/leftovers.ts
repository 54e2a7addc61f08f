/**
 * What a dataset writer leaves behind when it is killed: its scratch folder `.tmp/` (the video segments
 * of the episode it was recording) and files it was writing under a temporary name, to be renamed into
 * place once complete (`info.json.tmp-<pid>`, `file-000.mp4.tmp-<pid>.mp4`). No reader looks at them:
 * they take space and tell that a writer stopped before it finished (or is still running).
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

/** The writer's scratch folder, at the dataset's root. */
export const SCRATCH_DIR = '.tmp';

/** `<name>.tmp`, `<name>.tmp-<pid>` and the encoders' `<name>.tmp-<pid>.mp4`. */
const TEMPORARY_NAME = /\.tmp(-\d+(\.mp4)?)?$/;

export const isTemporaryName = (name: string): boolean => TEMPORARY_NAME.test(name);

export interface Leftover {
  /** Relative to the dataset folder, with `/` separators; a folder ends in `/`. */
  path: string;
  files: number;
  bytes: number;
}

function sizeOf(p: string): { files: number; bytes: number } {
  const st = statSync(p);
  if (!st.isDirectory()) return { files: 1, bytes: st.size };
  let files = 0;
  let bytes = 0;
  for (const entry of readdirSync(p)) {
    const s = sizeOf(path.join(p, entry));
    files += s.files;
    bytes += s.bytes;
  }
  return { files, bytes };
}

/** The leftovers under `dir`, in path order; none when `dir` does not exist. */
export function findLeftovers(dir: string): Leftover[] {
  const out: Leftover[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
      const abs = path.join(dir, child);
      if (entry.isDirectory() && rel === '' && entry.name === SCRATCH_DIR) {
        out.push({ path: `${child}/`, ...sizeOf(abs) });
      } else if (entry.isDirectory()) {
        walk(child);
      } else if (isTemporaryName(entry.name)) {
        out.push({ path: child, ...sizeOf(abs) });
      }
    }
  };
  if (existsSync(dir)) walk('');
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

export function removeLeftovers(dir: string, leftovers: Leftover[]): void {
  for (const l of leftovers) rmSync(path.join(dir, l.path), { recursive: true, force: true });
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** `.tmp/ (2 files, 3.1 KiB), meta/info.json.tmp-42 (120 B)`: at most `max` listed. */
export function describeLeftovers(leftovers: Leftover[], max = 5): string {
  const shown = leftovers.slice(0, max).map((l) => {
    const size = formatBytes(l.bytes);
    return l.path.endsWith('/')
      ? `${l.path} (${l.files} file${l.files === 1 ? '' : 's'}, ${size})`
      : `${l.path} (${size})`;
  });
  const more = leftovers.length - shown.length;
  return `${shown.join(', ')}${more > 0 ? ` and ${more} more` : ''}`;
}
