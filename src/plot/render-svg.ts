import type { Prim } from './plot.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const num = (v: number) => Number(v.toFixed(2)).toString();

/** An SVG document of the figure: text stays text, so it can be searched and copied. */
export function renderSvg(fig: { width: number; height: number; prims: Prim[] }): string {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${fig.width}" height="${fig.height}" viewBox="0 0 ${fig.width} ${fig.height}" font-family="Helvetica, Arial, sans-serif">`,
  ];
  for (const p of fig.prims) {
    if (p.kind === 'rect') {
      out.push(
        `<rect x="${num(p.x)}" y="${num(p.y)}" width="${num(p.w)}" height="${num(p.h)}" fill="${p.fill}"/>`,
      );
    } else if (p.kind === 'text') {
      const anchor = p.anchor === 'start' ? '' : ` text-anchor="${p.anchor}"`;
      // The size given is a capital's height; a font's em is about 1.4 of that.
      out.push(
        `<text x="${num(p.x)}" y="${num(p.y)}" font-size="${num(p.size * 1.4)}" fill="${p.color}"${anchor}>${esc(p.text)}</text>`,
      );
    } else if (p.points.length === 1) {
      const [x, y] = p.points[0]!;
      out.push(`<circle cx="${num(x)}" cy="${num(y)}" r="${num(p.width + 1)}" fill="${p.color}"/>`);
    } else {
      const pts = p.points.map(([x, y]) => `${num(x)},${num(y)}`).join(' ');
      const opacity = p.opacity < 1 ? ` stroke-opacity="${p.opacity}"` : '';
      out.push(
        `<polyline points="${pts}" fill="none" stroke="${p.color}" stroke-width="${p.width}"${opacity} stroke-linejoin="round"/>`,
      );
    }
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
