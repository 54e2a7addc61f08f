/**
 * The one place that touches mujoco-js (MuJoCo 3.3.8 compiled to WebAssembly, pinned at 0.0.7). Its
 * arrays are live views into WASM memory that move when the heap grows, so every read here takes a
 * fresh view and copies what leaves this file; everything it allocates is freed in `free()`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { MainModule, MjData, MjModel } from 'mujoco-js';

let modulePromise: Promise<MainModule> | undefined;
let fileCounter = 0;

/** The WASM module, loaded once per thread (~100 ms). */
export function mujocoModule(): Promise<MainModule> {
  // Imported on first use: the module is 11 MB of JavaScript, which every `vla` command would otherwise parse.
  modulePromise ??= import('mujoco-js')
    .then(({ default: load }) => load())
    .then((mj) => {
      mj.FS.mkdir('/vla');
      return mj;
    });
  return modulePromise;
}

export type ObjKind = 'body' | 'joint' | 'geom' | 'site' | 'camera' | 'actuator';

export interface Pose {
  pos: [number, number, number];
  /** Row-major 3×3 rotation (MuJoCo's xmat): columns are the frame's axes in world coordinates. */
  mat: number[];
}

export interface ContactPair {
  geom1: number;
  geom2: number;
}

export class Sim {
  private readonly jacp: InstanceType<MainModule['DoubleBuffer']>;
  private readonly jacr: InstanceType<MainModule['DoubleBuffer']>;
  private freed = false;

  private constructor(
    private readonly mj: MainModule,
    readonly model: MjModel,
    readonly data: MjData,
  ) {
    this.jacp = new mj.DoubleBuffer(3 * model.nv);
    this.jacr = new mj.DoubleBuffer(3 * model.nv);
  }

  /**
   * Compile an MJCF document; `files` are the other files it refers to (an attached arm model), by the
   * name it uses. `where` names the model in errors.
   */
  static async fromXml(
    xml: string,
    where = 'model.xml',
    files: Record<string, string | Uint8Array> = {},
  ): Promise<Sim> {
    const mj = await mujocoModule();
    const dir = `/vla/m${fileCounter++}`;
    mj.FS.mkdir(dir);
    const written = [`${dir}/main.xml`, ...Object.keys(files).map((f) => `${dir}/${f}`)];
    mj.FS.writeFile(written[0]!, xml);
    for (const [name, text] of Object.entries(files)) mj.FS.writeFile(`${dir}/${name}`, text);
    let model: MjModel;
    try {
      model = mj.MjModel.loadFromXML(written[0]!);
    } catch (e) {
      throw new Error(`${where}: MuJoCo could not compile the model: ${describeWasmError(e)}`);
    } finally {
      for (const f of written) mj.FS.unlink(f);
      mj.FS.rmdir(dir);
    }
    if (!model) throw new Error(`${where}: MuJoCo could not compile the model`);
    return new Sim(mj, model, new mj.MjData(model));
  }

  /** Compile an MJCF file from disk together with the files it names (`file="…"`) in its folder. */
  static async fromFile(file: string): Promise<Sim> {
    const { xml, files } = readScene(file);
    return Sim.fromXml(xml, file, files);
  }

  get nq(): number {
    return this.model.nq;
  }
  get nv(): number {
    return this.model.nv;
  }
  get nu(): number {
    return this.model.nu;
  }
  get timestep(): number {
    return this.model.opt.timestep;
  }
  get time(): number {
    return this.data.time;
  }

  /** The id of a named object, or an error naming what is missing. */
  id(kind: ObjKind, name: string): number {
    const id = this.mj.mj_name2id(this.model, OBJ[kind], name);
    if (id < 0) throw new Error(`MJCF has no ${kind} named "${name}"`);
    return id;
  }

  name(kind: ObjKind, id: number): string {
    return this.mj.mj_id2name(this.model, OBJ[kind], id) ?? '';
  }

  /** Back to the model's reference configuration (qpos0, zero velocities and controls), kinematics computed. */
  reset(): void {
    this.mj.mj_resetData(this.model, this.data);
    this.mj.mj_forward(this.model, this.data);
  }

  /** Hold `ctrl` for `substeps` physics steps. */
  step(ctrl: ArrayLike<number>, substeps: number): void {
    const c = this.data.ctrl as Float64Array;
    if (ctrl.length !== c.length)
      throw new Error(`ctrl has ${ctrl.length} values, the model has ${c.length} actuators`);
    for (let i = 0; i < c.length; i++) c[i] = ctrl[i]!;
    for (let s = 0; s < substeps; s++) this.mj.mj_step(this.model, this.data);
  }

  forward(): void {
    this.mj.mj_forward(this.model, this.data);
  }

  /** Positions and frames only (no dynamics): what IK needs between guesses. */
  kinematics(): void {
    this.mj.mj_kinematics(this.model, this.data);
    this.mj.mj_comPos(this.model, this.data);
  }

  qpos(): Float64Array {
    return Float64Array.from(this.data.qpos as Float64Array);
  }
  qvel(): Float64Array {
    return Float64Array.from(this.data.qvel as Float64Array);
  }

  setQpos(values: ArrayLike<number>, offset = 0): void {
    const q = this.data.qpos as Float64Array;
    for (let i = 0; i < values.length; i++) q[offset + i] = values[i]!;
  }

  setQvelZero(): void {
    (this.data.qvel as Float64Array).fill(0);
  }

  jointQposAdr(name: string): number {
    return (this.model.jnt_qposadr as Int32Array)[this.id('joint', name)]!;
  }

  jointDofAdr(name: string): number {
    return (this.model.jnt_dofadr as Int32Array)[this.id('joint', name)]!;
  }

  jointRange(name: string): [number, number] {
    const r = this.model.jnt_range as Float64Array;
    const j = this.id('joint', name);
    return [r[2 * j]!, r[2 * j + 1]!];
  }

  contacts(): ContactPair[] {
    const out: ContactPair[] = [];
    const n = this.data.ncon;
    // Each read of `data.contact` allocates a vector in the WASM heap: it must be deleted, or every
    // reward check leaks a few kilobytes and a long recording runs out of the 2 GiB heap.
    const vec = this.data.contact;
    try {
      for (let i = 0; i < n; i++) {
        const c = vec.get(i);
        if (!c) continue;
        out.push({ geom1: c.geom1, geom2: c.geom2 });
        c.delete();
      }
    } finally {
      vec.delete();
    }
    return out;
  }

  sitePose(id: number): Pose {
    return {
      pos: triple(this.data.site_xpos as Float64Array, id),
      mat: Array.from((this.data.site_xmat as Float64Array).subarray(9 * id, 9 * id + 9)),
    };
  }

  bodyPose(id: number): Pose {
    return {
      pos: triple(this.data.xpos as Float64Array, id),
      mat: Array.from((this.data.xmat as Float64Array).subarray(9 * id, 9 * id + 9)),
    };
  }

  geomPose(id: number): Pose {
    return {
      pos: triple(this.data.geom_xpos as Float64Array, id),
      mat: Array.from((this.data.geom_xmat as Float64Array).subarray(9 * id, 9 * id + 9)),
    };
  }

  /** The site's translational and rotational Jacobians (3×nv each, row-major), copied; call kinematics() first. */
  siteJacobian(id: number): { jacp: Float64Array; jacr: Float64Array } {
    this.mj.mj_jacSite(this.model, this.data, this.jacp.GetView(), this.jacr.GetView(), id);
    return {
      jacp: Float64Array.from(this.jacp.GetView() as Float64Array),
      jacr: Float64Array.from(this.jacr.GetView() as Float64Array),
    };
  }

  /** Fresh views of the geom poses for the renderer, valid until the next call into MuJoCo. */
  geomFrames(): { xpos: Float64Array; xmat: Float64Array } {
    return { xpos: this.data.geom_xpos as Float64Array, xmat: this.data.geom_xmat as Float64Array };
  }

  /** Fresh views of the camera poses, valid until the next call into MuJoCo. */
  cameraFrames(): { xpos: Float64Array; xmat: Float64Array } {
    return { xpos: this.data.cam_xpos as Float64Array, xmat: this.data.cam_xmat as Float64Array };
  }

  /** FNV-1a over time, qpos and qvel bytes: equal states give equal hashes, across processes too. */
  stateHash(): string {
    const parts = [new Float64Array([this.data.time]), this.qpos(), this.qvel()];
    let h = 0x811c9dc5;
    for (const p of parts) {
      const bytes = new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
      for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
    }
    return h.toString(16).padStart(8, '0');
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.jacp.delete();
    this.jacr.delete();
    this.data.delete();
    this.model.delete();
  }
}

const OBJ: Record<ObjKind, number> = {
  body: 1,
  joint: 3,
  geom: 5,
  site: 6,
  camera: 7,
  actuator: 19,
};

function triple(a: Float64Array, i: number): [number, number, number] {
  return [a[3 * i]!, a[3 * i + 1]!, a[3 * i + 2]!];
}

/** Emscripten throws C++ exceptions as CppException objects whose name is the C++ type (mjXError). */
function describeWasmError(e: unknown): string {
  if (e instanceof Error) return e.message ? `${e.name}: ${e.message}` : e.name;
  return String(e);
}

/** An MJCF file and the files it names (`file="..."`, beside it), as the simulator compiles them. */
export function readScene(file: string): { xml: string; files: Record<string, Uint8Array> } {
  const xml = readFileSync(file, 'utf8');
  const files: Record<string, Uint8Array> = {};
  for (const m of xml.matchAll(/\bfile="([^"]+)"/g)) {
    const ref = path.join(path.dirname(file), m[1]!);
    if (!existsSync(ref))
      throw new Error(`${file}: refers to ${m[1]}, which is not in ${path.dirname(file)}`);
    files[m[1]!] = readFileSync(ref);
  }
  return { xml, files };
}

/** sha256 of a scene: its MJCF and every file it names, so a moved camera or object changes it. */
export function sceneSha256(file: string): string {
  const { xml, files } = readScene(file);
  const h = createHash('sha256').update(xml);
  for (const name of Object.keys(files).sort()) h.update(`\0${name}\0`).update(files[name]!);
  return h.digest('hex');
}
