import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Sim } from '../../src/sim/mujoco.js';

const PENDULUM = `
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="arm" pos="0 0 0.5">
      <joint name="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02"/>
      <site name="tip" pos="0.3 0 0"/>
    </body>
    <body name="box" pos="0.5 0 0.2">
      <freejoint name="box_joint"/>
      <geom name="box" type="box" size="0.02 0.02 0.02"/>
    </body>
  </worldbody>
  <actuator><position name="servo" joint="hinge" kp="20"/></actuator>
</mujoco>`;

describe('MuJoCo adapter', () => {
  it('compiles MJCF, names what it finds, and reports what it does not', async () => {
    const sim = await Sim.fromXml(PENDULUM);
    try {
      expect([sim.nq, sim.nv, sim.nu]).toEqual([8, 7, 1]);
      expect(sim.name('site', sim.id('site', 'tip'))).toBe('tip');
      expect(sim.jointQposAdr('box_joint')).toBe(1);
      expect(() => sim.id('body', 'nope')).toThrow('MJCF has no body named "nope"');
      expect(() => sim.step([1, 2], 1)).toThrow('ctrl has 2 values, the model has 1 actuators');
    } finally {
      sim.free();
      sim.free();
    }
    await expect(
      Sim.fromXml('<mujoco><worldbody><geom type="bogus"/></worldbody></mujoco>', 'bad.xml'),
    ).rejects.toThrow(/^bad\.xml: MuJoCo could not compile the model/);
  });

  it('steps physics with substeps; a dropped box comes to rest on the floor touching it', async () => {
    const sim = await Sim.fromXml(PENDULUM);
    try {
      sim.reset();
      sim.step([0], 400);
      expect(sim.time).toBeCloseTo(0.8, 6);
      const box = sim.bodyPose(sim.id('body', 'box')).pos;
      expect(box[2]).toBeCloseTo(0.02, 2);
      const floor = sim.id('geom', 'floor');
      const boxGeom = sim.id('geom', 'box');
      expect(
        sim
          .contacts()
          .some(
            (c) => (c.geom1 === floor && c.geom2 === boxGeom) || (c.geom2 === floor && c.geom1 === boxGeom),
          ),
      ).toBe(true);
      // Copies, not live views: stepping again leaves what we read alone.
      const q = sim.qpos();
      const before = q[1];
      sim.step([0.5], 10);
      expect(q[1]).toBe(before);
      // Reading contacts leaves nothing behind in the WASM heap: a 1,000-episode recording reads them
      // about 300,000 times, and each read leaked a vector of them (kilobytes) until the 2 GiB heap ran out.
      const rss0 = process.memoryUsage().rss;
      for (let i = 0; i < 60_000; i++) sim.contacts();
      expect(process.memoryUsage().rss - rss0).toBeLessThan(64 << 20);
    } finally {
      sim.free();
    }
  });

  it("the site Jacobian matches finite differences of the site's position", async () => {
    const sim = await Sim.fromXml(PENDULUM);
    try {
      sim.reset();
      const tip = sim.id('site', 'tip');
      sim.setQpos([0.3], 0);
      sim.kinematics();
      const { jacp } = sim.siteJacobian(tip);
      const p0 = sim.sitePose(tip).pos;
      sim.setQpos([0.3 + 1e-6], 0);
      sim.kinematics();
      const p1 = sim.sitePose(tip).pos;
      for (let k = 0; k < 3; k++) expect(jacp[k * sim.nv]!).toBeCloseTo((p1[k]! - p0[k]!) / 1e-6, 4);
    } finally {
      sim.free();
    }
  });

  it('loads a model with the files it refers to, and names a missing one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vla-mjcf-'));
    try {
      writeFileSync(
        path.join(dir, 'part.xml'),
        '<mujoco><worldbody><body name="b"><geom type="sphere" size="0.1"/></body></worldbody></mujoco>',
      );
      writeFileSync(
        path.join(dir, 'scene.xml'),
        '<mujoco><asset><model name="part" file="part.xml"/></asset><worldbody><attach model="part" body="b" prefix="p/"/></worldbody></mujoco>',
      );
      const sim = await Sim.fromFile(path.join(dir, 'scene.xml'));
      expect(sim.id('body', 'p/b')).toBeGreaterThan(0);
      sim.free();
      writeFileSync(
        path.join(dir, 'broken.xml'),
        '<mujoco><asset><model name="x" file="missing.xml"/></asset></mujoco>',
      );
      await expect(Sim.fromFile(path.join(dir, 'broken.xml'))).rejects.toThrow(/refers to missing\.xml/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
