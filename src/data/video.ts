import { once } from 'node:events';
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { UserError } from '../config/errors.js';
import { runTool, startTool, type ToolProcess } from './ffmpeg.js';
export interface VideoProbe {
  width: number;
  height: number;
  codec: string;
  /** Presentation times of every frame, ascending, in seconds. */
  pts: number[];
}

/** Stream facts and frame times read from the container (no decoding). */
export async function probeVideo(file: string): Promise<VideoProbe> {
  if (!existsSync(file)) throw new UserError(`${file}: video file is missing`);
  const args = [
    '-v',
    'error',
    '-select_streams',
    'v:0',
    '-show_entries',
    'stream=width,height,codec_name:packet=pts_time',
  ];
  const out = await runTool('ffprobe', [...args, '-of', 'json', file], `${file}: unreadable video`);
  const json = JSON.parse(out.toString()) as {
    streams?: Array<{ width: number; height: number; codec_name: string }>;
    packets?: Array<{ pts_time?: string }>;
  };
  const stream = json.streams?.[0];
  if (!stream) throw new UserError(`${file}: no video stream`);
  const pts = (json.packets ?? [])
    .map((p) => Number(p.pts_time))
    .filter((t) => Number.isFinite(t))
    .sort((a, b) => a - b);
  return { width: stream.width, height: stream.height, codec: stream.codec_name, pts };
}

export interface DecodeRange {
  /** The first frame wanted lies within `margin` after `from` (seconds). */
  from: number;
  /** Half a frame period: keeps the first frame clear of the seek point's rounding. */
  margin: number;
  /** How many consecutive frames to decode from there. */
  count: number;
}

/**
 * Decodes `count` consecutive frames from time `from - margin` on to packed RGB24, calling `onFrame`
 * with each (the buffer is reused: copy what you keep). Returns the number decoded. The count,
 * not a duration, bounds the output: ffmpeg's `-t` drops a last frame whose display outlasts it.
 */
export async function decodeFrames(
  file: string,
  probe: VideoProbe,
  range: DecodeRange,
  onFrame: (i: number, rgb: Uint8Array) => void,
): Promise<number> {
  const start = Math.max(0, range.from - range.margin);
  const args = ['-v', 'error', '-nostdin'];
  if (start > 0) args.push('-ss', start.toFixed(6));
  args.push('-i', file, '-map', '0:v:0', '-frames:v', String(range.count));
  args.push('-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
  const run = startTool('ffmpeg', args, `${file}: cannot decode frames`, { stdout: true });
  const frameBytes = probe.width * probe.height * 3;
  const frame = new Uint8Array(frameBytes);
  let filled = 0;
  let count = 0;
  try {
    for await (const chunk of run.child.stdout as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(frameBytes - filled, chunk.length - off);
        frame.set(chunk.subarray(off, off + n), filled);
        filled += n;
        off += n;
        if (filled === frameBytes) {
          onFrame(count++, frame);
          filled = 0;
        }
      }
    }
  } catch (e) {
    run.child.kill();
    throw e;
  }
  await run.succeeded();
  return count;
}

export type VideoCodec = 'h264' | 'av1';

export interface EncodeOptions {
  width: number;
  height: number;
  fps: number;
  /** h264 (libx264, the default) or av1 (SVT-AV1, LeRobot's own choice; frames at least 64 px). */
  codec?: VideoCodec;
  /** Constant rate factor: lower is better quality (default 18 for h264, 30 for av1 as LeRobot). */
  crf?: number;
}

/** Encoder flags per codec; a GOP of 2 keeps random access cheap, as LeRobot encodes (g=2). */
function codecArgs(codec: VideoCodec, crf: number | undefined): string[] {
  if (codec === 'av1') return ['-c:v', 'libsvtav1', '-preset', '8', '-crf', String(crf ?? 30), '-g', '2'];
  return ['-c:v', 'libx264', '-preset', 'veryfast', '-crf', String(crf ?? 18), '-g', '2', '-bf', '0'];
}

/**
 * A video encoder (yuv420p mp4) fed with RGB24 frames through a pipe; `close()` finishes the file
 * and renames it into place, so a crash leaves no half-written mp4 under the final name.
 */
export class VideoEncoder {
  private readonly run: ToolProcess;
  /** ffmpeg's stdin (startTool made it a pipe). */
  private readonly stdin: Writable;
  private readonly tmp: string;
  /** ffmpeg's exit code once it has exited (-1 when it could not start). */
  readonly exited: Promise<number>;
  frames = 0;

  constructor(
    readonly file: string,
    readonly opts: EncodeOptions,
  ) {
    const codec = opts.codec ?? 'h264';
    if (opts.width % 2 !== 0 || opts.height % 2 !== 0) {
      throw new UserError(
        `${file}: ${codec} with yuv420p needs even frame sizes, got ${opts.width}x${opts.height}`,
      );
    }
    if (codec === 'av1' && (opts.width < 64 || opts.height < 64)) {
      throw new UserError(
        `${file}: SVT-AV1 needs frames of at least 64x64, got ${opts.width}x${opts.height} (use h264)`,
      );
    }
    this.tmp = `${file}.tmp-${process.pid}.mp4`;
    const args = [
      ...['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${opts.width}x${opts.height}`],
      ...['-framerate', String(opts.fps), '-i', 'pipe:0'],
      ...codecArgs(codec, opts.crf),
      ...['-pix_fmt', 'yuv420p', '-an', this.tmp],
    ];
    this.run = startTool('ffmpeg', args, `${file}: cannot encode video`, { stdin: true });
    this.stdin = this.run.child.stdin as Writable;
    this.exited = this.run.exited;
  }

  /**
   * Queues a frame without waiting: the pipe buffers while ffmpeg encodes on another core. Callers
   * that produce frames faster than ffmpeg encodes them await `drain()` now and then.
   */
  write(rgb: Uint8Array): void {
    const expected = this.opts.width * this.opts.height * 3;
    if (rgb.length !== expected) {
      throw new UserError(
        `${this.file}: frame ${this.frames} has ${rgb.length} bytes, expected ${expected} (${this.opts.height}x${this.opts.width}x3)`,
      );
    }
    this.frames++;
    // The pipe may hold on to the bytes until ffmpeg reads them: callers may reuse their buffer.
    this.stdin.write(Buffer.from(rgb));
  }

  /** Resolves once the queued frames have been handed to ffmpeg (or ffmpeg has exited). */
  async drain(): Promise<void> {
    if (this.stdin.writableNeedDrain) await Promise.race([once(this.stdin, 'drain'), this.exited]);
  }

  async close(): Promise<void> {
    this.stdin.end();
    try {
      await this.run.succeeded();
    } catch (e) {
      rmSync(this.tmp, { force: true });
      throw e;
    }
    renameSync(this.tmp, this.file);
  }

  /**
   * Drops the video. ffmpeg answers SIGTERM only between reads, and it blocks reading a pipe that stays
   * open, so a terminated encoder used to linger and keep the process alive after a discarded episode:
   * the pipe is closed and the process killed outright.
   */
  abort(): void {
    this.stdin.destroy();
    this.run.child.kill('SIGKILL');
    rmSync(this.tmp, { force: true });
  }
}
