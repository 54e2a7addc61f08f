/**
 * A file as an HTTP reply, streamed, with byte ranges (RFC 9110 §14): a <video> asks for `bytes=N-` to
 * seek, and a player that cannot seek cannot scrub. One range per request, as browsers ask; a
 * multi-range request gets the whole file, which the RFC allows.
 */
import { createReadStream, statSync } from 'node:fs';
import type http from 'node:http';
import { HttpError } from './http.js';

export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.mp4': 'video/mp4',
  '.png': 'image/png',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** `[start, end]` inclusive, 'unsatisfiable', or null for the whole file. */
export function parseRange(
  header: string | undefined,
  size: number,
): [number, number] | 'unsatisfiable' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Multi-range or another unit: answered with the whole file.
  if (!m) return null;
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return [start, end];
}

export function sendFile(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  file: string,
  contentType: string,
  what: string,
): void {
  let size: number;
  let mtime: Date;
  try {
    const s = statSync(file);
    if (!s.isFile()) throw new Error('not a file');
    size = s.size;
    mtime = s.mtime;
  } catch {
    throw new HttpError(404, `${what}: no such file`);
  }
  const etag = `"${size.toString(16)}-${Math.floor(mtime.getTime()).toString(16)}"`;
  const headers: http.OutgoingHttpHeaders = {
    'Content-Type': contentType,
    'Accept-Ranges': 'bytes',
    ETag: etag,
    'Last-Modified': mtime.toUTCString(),
    'Cache-Control': 'private, no-cache',
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers).end();
    return;
  }
  const range = parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    res
      .writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Type': 'text/plain; charset=utf-8' })
      .end(`Range ${req.headers.range}: expected bytes within 0..${size - 1} of ${what}\n`);
    return;
  }
  const [start, end] = range ?? [0, size - 1];
  const length = size === 0 ? 0 : end - start + 1;
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  headers['Content-Length'] = length;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return;
  }
  const stream = createReadStream(file, { start, end });
  // A file removed or truncated mid-read, or a player that seeks away: end this reply, nothing else.
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
}
