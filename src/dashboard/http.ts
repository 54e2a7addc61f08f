/**
 * The dashboard's HTTP vocabulary: an error that carries its status, JSON and text replies, a bounded
 * JSON body, and query parameters read with errors that name the parameter, the expected and the
 * actual value.
 */
import type http from 'node:http';
import { describeValue } from '../config/errors.js';

/** An answer other than 200, with the sentence the page shows. */
export class HttpError extends Error {
  override name = 'HttpError';

  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Actions send small JSON objects; anything larger is not one of ours. */
const MAX_BODY_BYTES = 64 * 1024;

export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res
    .writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
    })
    .end(body);
}

export function sendText(res: http.ServerResponse, status: number, text: string): void {
  res
    .writeHead(status, {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-store',
    })
    .end(text);
}

/** A request's JSON object body (an empty body is `{}`). */
export async function readJsonBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new HttpError(413, `request body: expected at most ${MAX_BODY_BYTES} bytes, got more`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, `request body: expected JSON, got ${describeValue(text.slice(0, 60))}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, `request body: expected a JSON object, got ${describeValue(value)}`);
  }
  return value as Record<string, unknown>;
}

/** A required query parameter. */
export function param(url: URL, name: string): string {
  const value = url.searchParams.get(name);
  if (value === null || value === '') {
    throw new HttpError(400, `query parameter ${name}: expected a value, got nothing (missing)`);
  }
  return value;
}

/** An integer query parameter >= min: `fallback` when absent. */
export function intParam(url: URL, name: string, min: number, fallback?: number): number {
  const text = url.searchParams.get(name);
  if (text === null || text === '') {
    if (fallback !== undefined) return fallback;
    throw new HttpError(400, `query parameter ${name}: expected an integer >= ${min}, got nothing (missing)`);
  }
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) {
    throw new HttpError(
      400,
      `query parameter ${name}: expected an integer >= ${min}, got ${describeValue(text)}`,
    );
  }
  return n;
}

/** A finite number query parameter, or null when absent. */
export function numberParam(url: URL, name: string): number | null {
  const text = url.searchParams.get(name);
  if (text === null || text === '') return null;
  const n = Number(text);
  if (!Number.isFinite(n)) {
    throw new HttpError(400, `query parameter ${name}: expected a number, got ${describeValue(text)}`);
  }
  return n;
}
