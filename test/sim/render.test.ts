import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decode } from 'fast-png';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VideoEncoder } from '../../src/data/video.js';
import { SimEnv } from '../../src/sim/env.js';
import { writePng } from '../../src/sim/png.js';
import { Renderer } from '../../src/sim/render.js';
import { cubePos, transferCube } from '../../src/sim/tasks/transfer_cube.js';

const hasFfmpeg = (() => {
  try {
    execFileSync('ffmpeg', ['-version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('software renderer', () => {
  let env: SimEnv;
  let dir: string;
  beforeAll(async () => {
    env = await SimEnv.create(transferCube, { cameras: ['cam_high', 'cam_left_wrist', 'cam_right_wrist'] });
    dir = mkdtempSync(path.join(tmpdir(), 'vla-render-'));
  });
  afterAll(() => {
    env.free();
    rmSync(dir, { recursive: true, force: true });
  });

  it('draws the red cube where the pinhole model of cam_high projects it', () => {
    const obs = env.reset(3);
    const img = obs.images.cam_high!;
    expect(img).toHaveLength(224 * 224 * 3);
    // Project the cube centre through the camera (MuJoCo cameras look down their -z axis).
    const cam = env.sim.id('camera', 'cam_high');
    const { xpos, xmat } = env.sim.cameraFrames();
    const c = cubePos(env);
    const d = [c[0] - xpos[3 * cam]!, c[1] - xpos[3 * cam + 1]!, c[2] + 0.02 - xpos[3 * cam + 2]!];
    const local = [0, 1, 2].map(
      (i) => d[0]! * xmat[9 * cam + i]! + d[1]! * xmat[9 * cam + 3 + i]! + d[2]! * xmat[9 * cam + 6 + i]!,
    );
    const f = 112 / Math.tan(((env.sim.model.cam_fovy as Float64Array)[cam]! * Math.PI) / 360);
    const u = Math.floor(112 + (f * local[0]!) / -local[2]!);
    const v = Math.floor(112 - (f * local[1]!) / -local[2]!);
    const k = 3 * (v * 224 + u);
    expect(img[k]!).toBeGreaterThan(150);
    expect(img[k + 1]!).toBeLessThan(60);
    // Elsewhere (a corner of the table), not red.
    const far = 3 * (200 * 224 + 20);
    expect(img[far]! - img[far + 1]!).toBeLessThan(100);
  });

  it('is deterministic: the same state gives the same bytes, a different state different ones', () => {
    const a = env.reset(3).images.cam_high!;
    const b = env.reset(3).images.cam_high!;
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
    const c = env.reset(4).images.cam_high!;
    expect(Buffer.compare(Buffer.from(a), Buffer.from(c))).not.toBe(0);
  });

  it('clips at the near plane: a wrist camera sees the table that extends behind it', () => {
    const img = env.reset(0).images.cam_left_wrist!;
    let background = 0;
    for (let i = 0; i < 224 * 224; i++) {
      if (img[3 * i] === 38 && img[3 * i + 1] === 42 && img[3 * i + 2] === 52) background++;
    }
    expect(background / (224 * 224)).toBeLessThan(0.5);
  });

  it('renders at any resolution and writes a PNG that decodes to the same pixels', () => {
    env.reset(1);
    const r = new Renderer(env.sim);
    const img = r.render(env.sim.id('camera', 'cam_high'), 97, 61);
    const file = path.join(dir, 'f.png');
    writePng(file, img, 97, 61);
    const png = decode(readFileSync(file));
    expect([png.width, png.height, png.channels]).toEqual([97, 61, 3]);
    expect(Buffer.compare(Buffer.from(png.data as Uint8Array), Buffer.from(img))).toBe(0);
  });

  it.runIf(hasFfmpeg)('writes an H.264 MP4 through ffmpeg with every frame', async () => {
    env.reset(2);
    const file = path.join(dir, 'ep.mp4');
    const video = new VideoEncoder(file, { width: 224, height: 224, fps: 50 });
    for (let t = 0; t < 12; t++) {
      env.step(env.state());
      video.write(env.render('cam_high'));
      await video.drain();
    }
    await video.close();
    const probe = execFileSync(
      'ffprobe',
      [
        '-v',
        'error',
        '-count_frames',
        '-select_streams',
        'v:0',
        '-show_entries',
        'stream=codec_name,width,height,nb_read_frames',
        '-of',
        'csv=p=0',
        file,
      ],
      { encoding: 'utf8' },
    ).trim();
    expect(probe).toBe('h264,224,224,12');
  });

  it.runIf(hasFfmpeg)('an aborted video ends its ffmpeg and leaves no file', async () => {
    env.reset(3);
    const file = path.join(dir, 'dropped.mp4');
    const video = new VideoEncoder(file, { width: 224, height: 224, fps: 50 });
    for (let t = 0; t < 3; t++) video.write(env.render('cam_high'));
    await video.drain();
    // Let ffmpeg start and block reading the pipe, where a plain SIGTERM never reached it.
    await new Promise((r) => setTimeout(r, 1000));
    video.abort();
    // A lingering ffmpeg (blocked reading its still-open pipe) kept `vla sim record` from exiting.
    const code = await Promise.race([
      video.exited,
      new Promise<string>((r) => setTimeout(() => r('still running'), 5000)),
    ]);
    expect(code).not.toBe('still running');
    expect(readdirSync(dir).filter((f) => f.startsWith('dropped'))).toEqual([]);
  });
});
