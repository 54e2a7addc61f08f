import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSimProvenance } from '../../src/data/info.js';
import { sceneSha256 } from '../../src/sim/mujoco.js';
import { recordedSceneDrift, sceneDrift, simProvenance } from '../../src/sim/provenance.js';
import { getTask } from '../../src/sim/tasks/index.js';

describe('scene provenance', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vla-scene-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const pickPlace = getTask('pick_place').task;

  it('names the scene relative to the package and hashes it', () => {
    const p = simProvenance(pickPlace);
    expect(p).toEqual({
      task: 'pick_place',
      scene: 'robots/mjcf/single_arm_sim.xml',
      scene_sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(parseSimProvenance(JSON.parse(JSON.stringify(p)))).toEqual(p);
    expect(parseSimProvenance({ task: 'pick_place' })).toBeNull();
    expect(sceneDrift(p, pickPlace, 'checkpoint c')).toBeNull();
    expect(recordedSceneDrift(p, 'checkpoint c')).toBeNull();
    expect(recordedSceneDrift({ ...p, task: 'gone' }, 'checkpoint c')).toBeNull();
  });

  it('a moved camera, or a change in a file the scene includes, changes the hash and is reported', () => {
    // ALOHA's scene includes vx300s.xml: both files travel to a scratch folder.
    const aloha = getTask('aloha_transfer_cube').task;
    const src = aloha.robot.mjcf;
    const scene = path.join(dir, path.basename(src));
    copyFileSync(src, scene);
    copyFileSync(path.join(path.dirname(src), 'vx300s.xml'), path.join(dir, 'vx300s.xml'));
    const task = { ...aloha, scene };
    const before = simProvenance(task);
    expect(before.scene_sha256).toBe(sceneSha256(src));

    writeFileSync(path.join(dir, 'vx300s.xml'), `${readFileSync(path.join(dir, 'vx300s.xml'), 'utf8')}\n`);
    const included = simProvenance(task);
    expect(included.scene_sha256).not.toBe(before.scene_sha256);

    const xml = readFileSync(scene, 'utf8');
    const moved = xml.replace(/(<camera name="cam_high" pos=")([^"]+)"/, '$10 0 9"');
    expect(moved).not.toBe(xml);
    writeFileSync(scene, moved);
    const warning = sceneDrift(included, task, 'checkpoint ckpt/1');
    expect(warning).toContain('checkpoint ckpt/1');
    expect(warning).toContain(included.scene_sha256.slice(0, 12));
    expect(warning).toContain(simProvenance(task).scene_sha256.slice(0, 12));
    expect(warning).toMatch(/record the demonstrations again/);
    // Data from another scene is not this one's to judge.
    expect(sceneDrift({ ...included, scene: 'robots/mjcf/other.xml' }, task, 'x')).toBeNull();
  });
});
