/**
 * Decoded camera frames for the episode player. Scrubbing asks for frames one after another, and
 * starting ffmpeg costs far more than decoding a few frames more: a request decodes a window from the
 * frame asked on, keeps the window's frames (RGB, within a byte budget, least recently used dropped
 * first), and a second request for a window being decoded waits for that decode instead of starting one.
 */

export interface Frame {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Decodes `frames` of one episode's camera, calling `onFrame` for each (the buffer may be reused). */
export type DecodeFrames = (
  frames: number[],
  onFrame: (i: number, rgb: Uint8Array, width: number, height: number) => void,
) => Promise<void>;

export class FrameCache {
  private readonly frames = new Map<string, Frame>();
  private readonly pending = new Map<string, Promise<void>>();
  private bytes = 0;

  constructor(
    private readonly budgetBytes = 24 * 1024 * 1024,
    private readonly window = 16,
  ) {}

  /** Frame `frame` of the sequence `key` (one episode's camera) of `length` frames. */
  async get(key: string, frame: number, length: number, decode: DecodeFrames): Promise<Frame> {
    const id = `${key}#${frame}`;
    const hit = this.frames.get(id);
    if (hit) {
      this.frames.delete(id);
      this.frames.set(id, hit);
      return hit;
    }
    const start = Math.floor(frame / this.window) * this.window;
    const windowId = `${key}@${start}`;
    let job = this.pending.get(windowId);
    if (!job) {
      const wanted = Array.from({ length: Math.min(this.window, length - start) }, (_, i) => start + i);
      job = decode(wanted, (i, rgb, width, height) =>
        this.put(`${key}#${i}`, { rgb: rgb.slice(), width, height }),
      );
      this.pending.set(windowId, job);
      job.then(
        () => this.pending.delete(windowId),
        () => this.pending.delete(windowId),
      );
    }
    await job;
    const decoded = this.frames.get(id);
    if (!decoded) throw new Error(`frame ${frame} of ${key} was not decoded`);
    return decoded;
  }

  private put(id: string, f: Frame): void {
    const old = this.frames.get(id);
    if (old) this.bytes -= old.rgb.length;
    this.frames.delete(id);
    this.frames.set(id, f);
    this.bytes += f.rgb.length;
    for (const [k, v] of this.frames) {
      if (this.bytes <= this.budgetBytes || k === id) break;
      this.frames.delete(k);
      this.bytes -= v.rgb.length;
    }
  }
}
