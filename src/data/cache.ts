/**
 * The frame cache: every frame of a camera decoded once, letterboxed to the model's square
 * resolution, stored raw (uint8 [frames, S, S, 3]) in dataset row order. Keyed by the dataset's
 * identity and the resolution, so later runs (and resumed ones) skip video decoding entirely.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { threadId } from 'node:worker_threads';
import { UserError } from '../config/errors.js';
import { resizeWithPad } from '../transforms/image.js';
import type { LeRobotDataset } from './reader.js';

const FORMAT = 1;
/** Caches up to this size are read into memory (unless told otherwise); larger ones frame by frame from disk. */
export const DEFAULT_IN_MEMORY_BYTES = 1024 * 1024 * 1024;

/** Where frame caches live and how large a one is read into memory (commands: cli/context.ts's frameCacheFromEnv). */
export interface FrameCacheOptions {
  /** Default ~/.cache/vla-orchestrator/frames (defaultCacheDir). */
  dir?: string;
  /** Caches up to this size are read into memory, larger ones frame by frame from disk (default 1 GiB). */
  memoryBytes?: number;
}

/** Where caches live unless told otherwise (commands read VLA_CACHE_DIR: cli/context.ts). */
export const defaultCacheDir = (): string => path.join(os.homedir(), '.cache', 'vla-orchestrator', 'frames');

interface Manifest {
  format: number;
  dataset: string;
  camera: string;
  imageSize: number;
  frames: number;
}

export function cacheKey(ds: LeRobotDataset, cameraKey: string, imageSize: number): string {
  const info = path.join(ds.dir, 'meta', 'info.json');
  const st = statSync(info);
  const identity = JSON.stringify({
    format: FORMAT,
    dir: ds.dir,
    info: readFileSync(info, 'utf8'),
    infoMtime: st.mtimeMs,
    episodes: ds.episodes.map((e) => [e.index, e.length, e.from]),
    cameraKey,
    imageSize,
  });
  return createHash('sha256').update(identity).digest('hex').slice(0, 24);
}

/** One camera's cached frames, read by dataset row (global frame position). */
export class FrameCache {
  private readonly memory: Uint8Array | null;
  private readonly fd: number | null;
  readonly frameBytes: number;

  constructor(
    readonly file: string,
    readonly frames: number,
    readonly imageSize: number,
    /** Caches up to this size are read into memory. */
    memoryBytes = DEFAULT_IN_MEMORY_BYTES,
  ) {
    this.frameBytes = imageSize * imageSize * 3;
    const size = statSync(file).size;
    if (size !== frames * this.frameBytes) {
      throw new UserError(
        `${file}: frame cache holds ${size} bytes, expected ${frames * this.frameBytes}: delete it to rebuild`,
      );
    }
    if (size <= memoryBytes) {
      this.memory = readFileSync(file);
      this.fd = null;
    } else {
      this.memory = null;
      this.fd = openSync(file, 'r');
    }
  }

  /** Whether the whole cache was read into memory (else frames are read from disk one by one). */
  get inMemory(): boolean {
    return this.memory !== null;
  }

  /** Copies frame `row` into `out` at `offset`. */
  read(row: number, out: Uint8Array, offset: number): void {
    const start = row * this.frameBytes;
    if (this.memory) out.set(this.memory.subarray(start, start + this.frameBytes), offset);
    else readSync(this.fd!, out, offset, this.frameBytes, start);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
  }
}

/** Thrown when a stop request (`signal`) ends a frame cache build; the episodes already decoded are kept. */
export class CacheBuildAborted extends Error {
  constructor(
    camera: string,
    /** Frames decoded and kept for the next build of this cache. */
    readonly keptFrames = 0,
  ) {
    super(`stopped while building the frame cache of ${camera}`);
    this.name = 'CacheBuildAborted';
  }
}

/** Whether a process with this pid runs on this machine. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Where this process builds a cache: the shared partial folder of the key, resumable (its journal
 * names the episodes whose frames are written), unless another live process is building it; then
 * a folder of this process's own, discarded when the build stops.
 */
function claimBuildFolder(root: string, key: string): { dir: string; resumable: boolean } {
  const partial = path.join(root, `.partial-${key}`);
  mkdirSync(partial, { recursive: true });
  const lock = path.join(partial, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return { dir: partial, resumable: true };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
      // This process's own pid: another build of the same cache in this process (a worker thread).
      if (Number.isInteger(holder) && alive(holder)) break;
      rmSync(lock, { force: true }); // left by a build that was killed
    }
  }
  const own = path.join(root, `.tmp-${key}-${process.pid}-${threadId}-${randomBytes(4).toString('hex')}`);
  rmSync(own, { recursive: true, force: true });
  mkdirSync(own);
  return { dir: own, resumable: false };
}

/** Episode indexes the journal of a partial build names as written (a torn last line is ignored). */
function journaled(file: string): Set<number> {
  if (!existsSync(file)) return new Set();
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.pop(); // the text after the last newline: empty, or a line cut short
  return new Set(lines.map((l) => Number.parseInt(l, 10)).filter(Number.isInteger));
}

/**
 * Opens the cache of one camera, building it first when absent. The build writes into a partial
 * folder renamed into place at the end, so an unfinished build is never mistaken for a cache. Each
 * episode's frames are flushed to disk before its index is appended to the folder's journal, so a
 * build that was stopped (`signal`: between episodes, `CacheBuildAborted`), failed or was killed goes
 * on from its written episodes the next time. Two processes building one cache at once: the second
 * builds its own copy and keeps whichever lands first.
 */
export async function openFrameCache(
  ds: LeRobotDataset,
  cameraKey: string,
  imageSize: number,
  opts: FrameCacheOptions & { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<FrameCache> {
  const root = opts.dir ?? defaultCacheDir();
  const key = cacheKey(ds, cameraKey, imageSize);
  const dir = path.join(root, key);
  const file = path.join(dir, 'frames.u8');
  const total = ds.numFrames;
  if (existsSync(path.join(dir, 'manifest.json')))
    return new FrameCache(file, total, imageSize, opts.memoryBytes);
  mkdirSync(root, { recursive: true });
  const build = claimBuildFolder(root, key);
  const framesFile = path.join(build.dir, 'frames.u8');
  const journalFile = path.join(build.dir, 'episodes.done');
  const written = build.resumable && existsSync(framesFile) ? journaled(journalFile) : new Set<number>();
  const fd = openSync(framesFile, written.size > 0 ? 'r+' : 'w');
  const journal = build.resumable ? openSync(journalFile, written.size > 0 ? 'a' : 'w') : null;
  const release = () => {
    closeSync(fd);
    if (journal !== null) closeSync(journal);
    if (build.resumable) rmSync(path.join(build.dir, 'lock'), { force: true });
    else rmSync(build.dir, { recursive: true, force: true });
  };
  const frameBytes = imageSize * imageSize * 3;
  const rowOf = new Map<number, number>();
  let row = 0;
  for (const ep of ds.episodes) {
    rowOf.set(ep.index, row);
    row += ep.length;
  }
  const todo = ds.episodes.filter((ep) => !written.has(ep.index));
  let done = total - todo.reduce((n, ep) => n + ep.length, 0);
  if (done > 0) opts.onProgress?.(done, total);
  // Two episodes in flight: one ffmpeg decodes while this thread resizes the other's frames.
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      if (opts.signal?.aborted) throw new CacheBuildAborted(cameraKey);
      const ep = todo[next++]!;
      const buf = new Uint8Array(ep.length * frameBytes);
      let seen = 0;
      await ds.streamFrames(ep.index, cameraKey, (i, rgb, w, h) => {
        resizeWithPad(rgb, w, h, imageSize, buf, i * frameBytes);
        seen++;
      });
      if (seen !== ep.length) {
        throw new UserError(
          `episode ${ep.index}, camera ${cameraKey}: got ${seen} frames, expected ${ep.length}`,
        );
      }
      writeSync(fd, buf, 0, buf.length, rowOf.get(ep.index)! * frameBytes);
      if (journal !== null) {
        fdatasyncSync(fd);
        writeSync(journal, `${ep.index}\n`);
      }
      done += ep.length;
      opts.onProgress?.(done, total);
    }
  };
  // Both workers finish before cleanup, so neither writes to a closed descriptor.
  const failed = (await Promise.allSettled([worker(), worker()])).find((r) => r.status === 'rejected');
  if (failed) {
    release();
    const reason = (failed as PromiseRejectedResult).reason;
    if (reason instanceof CacheBuildAborted)
      throw new CacheBuildAborted(cameraKey, build.resumable ? done : 0);
    throw reason;
  }
  closeSync(fd);
  if (journal !== null) closeSync(journal);
  rmSync(journalFile, { force: true });
  const manifest: Manifest = { format: FORMAT, dataset: ds.dir, camera: cameraKey, imageSize, frames: total };
  writeFileSync(path.join(build.dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  try {
    // Renamed with its lock, so no other process claims the folder in between.
    renameSync(build.dir, dir);
    rmSync(path.join(dir, 'lock'), { force: true });
  } catch (e) {
    // Another process finished the same cache first: theirs is as good as ours.
    rmSync(build.dir, { recursive: true, force: true });
    if (!existsSync(path.join(dir, 'manifest.json'))) throw e;
  }
  return new FrameCache(file, total, imageSize, opts.memoryBytes);
}
