import { encode } from 'fast-png';
import { CAP_H, GLYPH_H, GLYPH_W, glyph, glyphScale, textWidth } from './font.js';
import type { Prim } from './plot.js';

function rgb(hex: string): [number, number, number] {
  const v = Number.parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

class Raster {
  readonly data: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = new Uint8Array(width * height * 3);
  }

  blend(x: number, y: number, c: [number, number, number], alpha: number): void {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    for (let k = 0; k < 3; k++)
      this.data[i + k] = Math.round(this.data[i + k]! * (1 - alpha) + c[k]! * alpha);
  }

  /** Mark the pixels a polyline of this width covers, each once, so a faint line does not darken where it overlaps itself. */
  cover(points: Array<[number, number]>, width: number, mask: Set<number>): void {
    const square = (cx: number, cy: number, k: number) => {
      const x0 = Math.round(cx - k / 2);
      const y0 = Math.round(cy - k / 2);
      for (let y = y0; y < y0 + k; y++) {
        for (let x = x0; x < x0 + k; x++) {
          if (x >= 0 && y >= 0 && x < this.width && y < this.height) mask.add(y * this.width + x);
        }
      }
    };
    const k = Math.max(1, Math.round(width));
    if (points.length === 1) {
      square(points[0]![0], points[0]![1], k + 3);
      return;
    }
    for (let i = 1; i < points.length; i++) {
      const [x0, y0] = points[i - 1]!;
      const [x1, y1] = points[i]!;
      const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) * 2));
      for (let s = 0; s <= n; s++) square(x0 + ((x1 - x0) * s) / n, y0 + ((y1 - y0) * s) / n, k);
    }
  }

  text(
    x: number,
    y: number,
    text: string,
    size: number,
    anchor: 'start' | 'middle' | 'end',
    c: [number, number, number],
  ): void {
    const scale = glyphScale(size);
    const advance = (GLYPH_W + 1) * scale;
    const w = textWidth(text, size);
    let left = Math.round(anchor === 'start' ? x : anchor === 'middle' ? x - w / 2 : x - w);
    const top = Math.round(y - CAP_H * scale);
    for (const ch of text) {
      const cols = glyph(ch);
      for (let col = 0; col < GLYPH_W; col++) {
        for (let row = 0; row < GLYPH_H; row++) {
          if (!((cols[col]! >> row) & 1)) continue;
          for (let dy = 0; dy < scale; dy++)
            for (let dx = 0; dx < scale; dx++)
              this.blend(left + col * scale + dx, top + row * scale + dy, c, 1);
        }
      }
      left += advance;
    }
  }
}

/** A PNG of the figure, drawn by our own rasteriser and encoded with fast-png. */
export function renderPng(fig: { width: number; height: number; prims: Prim[] }): Uint8Array {
  const width = Math.ceil(fig.width);
  const height = Math.ceil(fig.height);
  const r = new Raster(width, height);
  for (const p of fig.prims) {
    if (p.kind === 'rect') {
      const c = rgb(p.fill);
      for (let y = Math.max(0, Math.floor(p.y)); y < Math.min(height, p.y + p.h); y++) {
        for (let x = Math.max(0, Math.floor(p.x)); x < Math.min(width, p.x + p.w); x++) r.blend(x, y, c, 1);
      }
    } else if (p.kind === 'text') {
      r.text(p.x, p.y, p.text, p.size, p.anchor, rgb(p.color));
    } else {
      const mask = new Set<number>();
      r.cover(p.points, p.width, mask);
      const c = rgb(p.color);
      for (const i of mask) r.blend(i % width, Math.floor(i / width), c, p.opacity);
    }
  }
  return encode({ width, height, data: r.data, channels: 3, depth: 8 });
}
