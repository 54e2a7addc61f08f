/**
 * MP4 (H.264) through the system ffmpeg: raw RGB frames go to its stdin; the file appears under its
 * final name only once ffmpeg has finished it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../config/errors.js';

export class VideoWriter {
  private readonly proc: ChildProcess;
  private readonly tmp: string;
  private readonly done: Promise<void>;
  private stderr = '';
  frames = 0;

  constructor(
    readonly file: string,
    readonly width: number,
    readonly height: number,
    fps: number,
  ) {
    this.tmp = path.join(path.dirname(file), `.${path.basename(file, '.mp4')}.tmp-${process.pid}.mp4`);
    this.proc = spawn(
      'ffmpeg',
      [
        '-hide_banner',
        '-loglevel',
        'error',
        '-y',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        '-s',
        `${width}x${height}`,
        '-r',
        String(fps),
        '-i',
        '-',
        '-c:v',
        'libx264',
        '-pix_fmt',
        'yuv420p',
        '-preset',
        'veryfast',
        '-crf',
        '23',
        // yuv420p needs even sizes; pad odd ones by a pixel.
        '-vf',
        'pad=ceil(iw/2)*2:ceil(ih/2)*2',
        '-movflags',
        '+faststart',
        this.tmp,
      ],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.done = new Promise((resolve, reject) => {
      this.proc.on('error', (e: NodeJS.ErrnoException) =>
        reject(
          e.code === 'ENOENT'
            ? new UserError('ffmpeg not found: install it (Debian: apt-get install ffmpeg) to write videos')
            : e,
        ),
      );
      this.proc.on('close', (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`ffmpeg exited with ${code} writing ${file}: ${this.stderr.trim()}`)),
      );
    });
    // Without a listener an early ffmpeg failure surfaces as an unhandled rejection.
    this.done.catch(() => {});
  }

  /** Queue one HWC RGB frame; resolves when ffmpeg can take more. */
  async write(rgb: Uint8Array): Promise<void> {
    if (rgb.length !== this.width * this.height * 3) {
      throw new Error(`frame has ${rgb.length} bytes, expected ${this.width}x${this.height}x3`);
    }
    this.frames++;
    const stdin = this.proc.stdin!;
    if (!stdin.write(rgb)) {
      await Promise.race([new Promise((r) => stdin.once('drain', r)), this.done]);
    }
  }

  /** Stop without leaving a file (an episode that never produced a frame). */
  async abort(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.done.catch(() => {});
    rmSync(this.tmp, { force: true });
  }

  async close(): Promise<void> {
    this.proc.stdin!.end();
    try {
      await this.done;
    } catch (e) {
      rmSync(this.tmp, { force: true });
      throw e;
    }
    renameSync(this.tmp, this.file);
  }
}
