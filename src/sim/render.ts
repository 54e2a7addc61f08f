/**
 * A software rasterizer for MuJoCo scenes made of primitive geoms: each geom is tessellated once in its
 * own frame, then every frame is posed from MuJoCo's geom_xpos/geom_xmat, seen through an MJCF camera
 * (pinhole, the camera's fovy), clipped at the near plane, z-buffered and flat Lambert shaded. Pure
 * arithmetic in a fixed order, so the same state always gives the same pixels.
 */
import type { Sim } from './mujoco.js';

const NEAR = 0.01;
const SEGMENTS = 14;
const LIGHT = normalize3([0.25, 0.35, 1]);
const BACKGROUND = [38, 42, 52];

/** Triangles of one geom in its local frame: 9 floats per triangle, and its colour. */
interface GeomMesh {
  geom: number;
  tris: Float32Array;
  rgb: [number, number, number];
}

export class Renderer {
  private readonly meshes: GeomMesh[] = [];
  private readonly fovy: Float64Array;
  private depth = new Float32Array(0);

  constructor(private readonly sim: Sim) {
    const m = sim.model;
    const types = m.geom_type as Int32Array;
    const sizes = m.geom_size as Float64Array;
    const rgba = m.geom_rgba as Float32Array;
    const matid = m.geom_matid as Int32Array;
    const matRgba = m.mat_rgba as Float32Array;
    for (let g = 0; g < m.ngeom; g++) {
      const size = [sizes[3 * g]!, sizes[3 * g + 1]!, sizes[3 * g + 2]!] as const;
      const tris = tessellate(types[g]!, size);
      if (!tris) continue;
      const src =
        matid[g]! >= 0 ? matRgba.subarray(4 * matid[g]!, 4 * matid[g]! + 4) : rgba.subarray(4 * g, 4 * g + 4);
      if (src[3]! === 0) continue;
      this.meshes.push({ geom: g, tris, rgb: [src[0]!, src[1]!, src[2]!] });
    }
    this.fovy = Float64Array.from(m.cam_fovy as Float64Array);
  }

  /** Draw the scene as MJCF camera `camera` sees it now, into a new HWC RGB buffer. */
  render(camera: number, width: number, height: number): Uint8Array {
    const out = new Uint8Array(width * height * 3);
    for (let i = 0; i < 3 * width * height; i += 3) {
      out[i] = BACKGROUND[0]!;
      out[i + 1] = BACKGROUND[1]!;
      out[i + 2] = BACKGROUND[2]!;
    }
    if (this.depth.length !== width * height) this.depth = new Float32Array(width * height);
    const depth = this.depth;
    depth.fill(0);
    const cams = this.sim.cameraFrames();
    const cp = [cams.xpos[3 * camera]!, cams.xpos[3 * camera + 1]!, cams.xpos[3 * camera + 2]!];
    const cm = Array.from(cams.xmat.subarray(9 * camera, 9 * camera + 9));
    const f = height / 2 / Math.tan((this.fovy[camera]! * Math.PI) / 360);
    const cx = width / 2;
    const cy = height / 2;
    const { xpos, xmat } = this.sim.geomFrames();
    // World → camera: rows of the camera frame (its columns in world coordinates, transposed).
    const poly = new Float64Array(4 * 3);
    const clipped = new Float64Array(5 * 3);
    const screen = new Float64Array(5 * 3);
    for (const mesh of this.meshes) {
      const g = mesh.geom;
      const R = xmat.subarray(9 * g, 9 * g + 9);
      const px = xpos[3 * g]! - cp[0]!;
      const py = xpos[3 * g + 1]! - cp[1]!;
      const pz = xpos[3 * g + 2]! - cp[2]!;
      // M = Camᵀ · R, t = Camᵀ · (p - camPos): local vertex → camera coordinates in one product.
      const M = new Float64Array(9);
      for (let i = 0; i < 3; i++) {
        for (let j = 0; j < 3; j++)
          M[3 * i + j] = cm[i]! * R[j]! + cm[3 + i]! * R[3 + j]! + cm[6 + i]! * R[6 + j]!;
      }
      const tx = cm[0]! * px + cm[3]! * py + cm[6]! * pz;
      const ty = cm[1]! * px + cm[4]! * py + cm[7]! * pz;
      const tz = cm[2]! * px + cm[5]! * py + cm[8]! * pz;
      const tris = mesh.tris;
      for (let t = 0; t < tris.length; t += 9) {
        for (let v = 0; v < 3; v++) {
          const lx = tris[t + 3 * v]!;
          const ly = tris[t + 3 * v + 1]!;
          const lz = tris[t + 3 * v + 2]!;
          poly[3 * v] = M[0]! * lx + M[1]! * ly + M[2]! * lz + tx;
          poly[3 * v + 1] = M[3]! * lx + M[4]! * ly + M[5]! * lz + ty;
          poly[3 * v + 2] = M[6]! * lx + M[7]! * ly + M[8]! * lz + tz;
        }
        // Face normal in camera coordinates; the camera looks down -z, so a visible face has n·v < 0.
        const ax = poly[3]! - poly[0]!;
        const ay = poly[4]! - poly[1]!;
        const az = poly[5]! - poly[2]!;
        const bx = poly[6]! - poly[0]!;
        const by = poly[7]! - poly[1]!;
        const bz = poly[8]! - poly[2]!;
        let nx = ay * bz - az * by;
        let ny = az * bx - ax * bz;
        let nz = ax * by - ay * bx;
        if (nx * poly[0]! + ny * poly[1]! + nz * poly[2]! >= 0) continue;
        const nl = Math.hypot(nx, ny, nz);
        if (nl === 0) continue;
        nx /= nl;
        ny /= nl;
        nz /= nl;
        const n = clipNear(poly, clipped);
        if (n < 3) continue;
        // Light is fixed in the world: bring the camera-frame normal back to world for Lambert.
        const wx = cm[0]! * nx + cm[1]! * ny + cm[2]! * nz;
        const wy = cm[3]! * nx + cm[4]! * ny + cm[5]! * nz;
        const wz = cm[6]! * nx + cm[7]! * ny + cm[8]! * nz;
        const lambert = Math.max(0, wx * LIGHT[0]! + wy * LIGHT[1]! + wz * LIGHT[2]!);
        const facing = Math.max(0, -nz);
        const shade = 0.3 + 0.5 * lambert + 0.25 * facing;
        const r = Math.min(255, Math.round(mesh.rgb[0] * shade * 255));
        const gC = Math.min(255, Math.round(mesh.rgb[1] * shade * 255));
        const b = Math.min(255, Math.round(mesh.rgb[2] * shade * 255));
        for (let v = 0; v < n; v++) {
          const z = -clipped[3 * v + 2]!;
          screen[3 * v] = cx + (f * clipped[3 * v]!) / z;
          screen[3 * v + 1] = cy - (f * clipped[3 * v + 1]!) / z;
          screen[3 * v + 2] = 1 / z;
        }
        for (let v = 1; v + 1 < n; v++)
          fillTriangle(screen, 0, v, v + 1, width, height, depth, out, r, gC, b);
      }
    }
    return out;
  }
}

/** Clip a camera-space triangle to z <= -NEAR; returns the vertex count of the convex result (0, 3 or 4). */
function clipNear(tri: Float64Array, out: Float64Array): number {
  let n = 0;
  for (let i = 0; i < 3; i++) {
    const j = (i + 1) % 3;
    const zi = tri[3 * i + 2]!;
    const zj = tri[3 * j + 2]!;
    const inI = zi <= -NEAR;
    const inJ = zj <= -NEAR;
    if (inI) {
      out[3 * n] = tri[3 * i]!;
      out[3 * n + 1] = tri[3 * i + 1]!;
      out[3 * n + 2] = zi;
      n++;
    }
    if (inI !== inJ) {
      const s = (-NEAR - zi) / (zj - zi);
      out[3 * n] = tri[3 * i]! + s * (tri[3 * j]! - tri[3 * i]!);
      out[3 * n + 1] = tri[3 * i + 1]! + s * (tri[3 * j + 1]! - tri[3 * i + 1]!);
      out[3 * n + 2] = -NEAR;
      n++;
    }
  }
  return n;
}

/**
 * Scanline fill at pixel centres: each row's covered span comes straight from the three edge equations,
 * and 1/z (linear in screen space) is stepped along it; the buffer keeps the largest 1/z (the nearest).
 */
function fillTriangle(
  s: Float64Array,
  a: number,
  b: number,
  c: number,
  width: number,
  height: number,
  depth: Float32Array,
  out: Uint8Array,
  r: number,
  g: number,
  bl: number,
): void {
  const x0 = s[3 * a]!;
  const y0 = s[3 * a + 1]!;
  const w0 = s[3 * a + 2]!;
  const x1 = s[3 * b]!;
  const y1 = s[3 * b + 1]!;
  const w1 = s[3 * b + 2]!;
  const x2 = s[3 * c]!;
  const y2 = s[3 * c + 1]!;
  const w2 = s[3 * c + 2]!;
  const area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
  if (area === 0) return;
  const inv = 1 / area;
  // Barycentric weights as planes e_i(x, y) = A_i x + B_i y + C_i, each >= 0 inside.
  const A0 = -(y2 - y1) * inv;
  const B0 = (x2 - x1) * inv;
  const C0 = -(A0 * x1 + B0 * y1);
  const A1 = -(y0 - y2) * inv;
  const B1 = (x0 - x2) * inv;
  const C1 = -(A1 * x2 + B1 * y2);
  const A2 = -A0 - A1;
  const B2 = -B0 - B1;
  const C2 = 1 - C0 - C1;
  const Aw = A0 * w0 + A1 * w1 + A2 * w2;
  const Bw = B0 * w0 + B1 * w1 + B2 * w2;
  const Cw = C0 * w0 + C1 * w1 + C2 * w2;
  const minY = Math.max(0, Math.floor(Math.min(y0, y1, y2)));
  const maxY = Math.min(height - 1, Math.ceil(Math.max(y0, y1, y2)));
  const bx0 = Math.max(0, Math.floor(Math.min(x0, x1, x2)));
  const bx1 = Math.min(width - 1, Math.ceil(Math.max(x0, x1, x2)));
  for (let y = minY; y <= maxY; y++) {
    const py = y + 0.5;
    let lo = bx0 + 0.5;
    let hi = bx1 + 0.5;
    const k0 = B0 * py + C0;
    const k1 = B1 * py + C1;
    const k2 = B2 * py + C2;
    if (A0 > 0) lo = Math.max(lo, -k0 / A0);
    else if (A0 < 0) hi = Math.min(hi, -k0 / A0);
    else if (k0 < 0) continue;
    if (A1 > 0) lo = Math.max(lo, -k1 / A1);
    else if (A1 < 0) hi = Math.min(hi, -k1 / A1);
    else if (k1 < 0) continue;
    if (A2 > 0) lo = Math.max(lo, -k2 / A2);
    else if (A2 < 0) hi = Math.min(hi, -k2 / A2);
    else if (k2 < 0) continue;
    const xs = Math.max(bx0, Math.ceil(lo - 0.5));
    const xe = Math.min(bx1, Math.floor(hi - 0.5));
    if (xs > xe) continue;
    let w = Aw * (xs + 0.5) + Bw * py + Cw;
    let k = y * width + xs;
    for (let x = xs; x <= xe; x++, k++, w += Aw) {
      if (w <= depth[k]!) continue;
      depth[k] = w;
      out[3 * k] = r;
      out[3 * k + 1] = g;
      out[3 * k + 2] = bl;
    }
  }
}

/** MuJoCo geom types: 0 plane, 2 sphere, 3 capsule, 4 ellipsoid, 5 cylinder, 6 box. Others are not drawn. */
function tessellate(type: number, size: readonly [number, number, number]): Float32Array | null {
  const tris: number[] = [];
  const quad = (a: number[], b: number[], c: number[], d: number[]) =>
    tris.push(...a, ...b, ...c, ...a, ...c, ...d);
  switch (type) {
    case 0: {
      const sx = size[0] > 0 ? size[0] : 5;
      const sy = size[1] > 0 ? size[1] : 5;
      quad([-sx, -sy, 0], [sx, -sy, 0], [sx, sy, 0], [-sx, sy, 0]);
      break;
    }
    case 6: {
      const [x, y, z] = size;
      quad([-x, -y, z], [x, -y, z], [x, y, z], [-x, y, z]);
      quad([-x, y, -z], [x, y, -z], [x, -y, -z], [-x, -y, -z]);
      quad([x, -y, -z], [x, y, -z], [x, y, z], [x, -y, z]);
      quad([-x, y, -z], [-x, -y, -z], [-x, -y, z], [-x, y, z]);
      quad([-x, -y, -z], [x, -y, -z], [x, -y, z], [-x, -y, z]);
      quad([x, y, -z], [-x, y, -z], [-x, y, z], [x, y, z]);
      break;
    }
    case 2:
    case 4: {
      const [rx, ry, rz] = type === 2 ? [size[0], size[0], size[0]] : size;
      sphereBand(tris, rx, ry, rz, 0, -Math.PI / 2, Math.PI / 2);
      break;
    }
    case 3:
    case 5: {
      const r = size[0];
      const h = size[1];
      for (let i = 0; i < SEGMENTS; i++) {
        const a0 = (2 * Math.PI * i) / SEGMENTS;
        const a1 = (2 * Math.PI * (i + 1)) / SEGMENTS;
        const p0 = [r * Math.cos(a0), r * Math.sin(a0)];
        const p1 = [r * Math.cos(a1), r * Math.sin(a1)];
        quad([p0[0]!, p0[1]!, -h], [p1[0]!, p1[1]!, -h], [p1[0]!, p1[1]!, h], [p0[0]!, p0[1]!, h]);
        if (type === 5) {
          tris.push(0, 0, h, p0[0]!, p0[1]!, h, p1[0]!, p1[1]!, h);
          tris.push(0, 0, -h, p1[0]!, p1[1]!, -h, p0[0]!, p0[1]!, -h);
        }
      }
      if (type === 3) {
        sphereBand(tris, r, r, r, h, 0, Math.PI / 2);
        sphereBand(tris, r, r, r, -h, -Math.PI / 2, 0);
      }
      break;
    }
    default:
      return null;
  }
  return Float32Array.from(tris);
}

/** Latitude bands of an ellipsoid between two latitudes, centred at z = dz, facing outwards. */
function sphereBand(
  tris: number[],
  rx: number,
  ry: number,
  rz: number,
  dz: number,
  lat0: number,
  lat1: number,
): void {
  const bands = Math.max(2, Math.round(((lat1 - lat0) / Math.PI) * SEGMENTS * 0.5));
  const pt = (lat: number, lon: number) => [
    rx * Math.cos(lat) * Math.cos(lon),
    ry * Math.cos(lat) * Math.sin(lon),
    dz + rz * Math.sin(lat),
  ];
  for (let i = 0; i < bands; i++) {
    const la = lat0 + ((lat1 - lat0) * i) / bands;
    const lb = lat0 + ((lat1 - lat0) * (i + 1)) / bands;
    for (let j = 0; j < SEGMENTS; j++) {
      const oa = (2 * Math.PI * j) / SEGMENTS;
      const ob = (2 * Math.PI * (j + 1)) / SEGMENTS;
      const a = pt(la, oa);
      const b = pt(la, ob);
      const c = pt(lb, ob);
      const d = pt(lb, oa);
      tris.push(...a, ...b, ...c, ...a, ...c, ...d);
    }
  }
}

function normalize3(v: number[]): number[] {
  const n = Math.hypot(v[0]!, v[1]!, v[2]!);
  return v.map((x) => x / n);
}

/** A renderer for an env's spec cameras at one resolution (the robot spec's camera shape). */
export function specCameraRenderer(
  sim: Sim,
  cameras: Record<string, string>,
  width: number,
  height: number,
): (camera: string) => Uint8Array {
  const renderer = new Renderer(sim);
  const ids = new Map(Object.entries(cameras).map(([spec, mjcf]) => [spec, sim.id('camera', mjcf)]));
  return (camera) => {
    const id = ids.get(camera);
    if (id === undefined)
      throw new Error(`no camera ${camera}: expected one of ${[...ids.keys()].join(', ')}`);
    return renderer.render(id, width, height);
  };
}
