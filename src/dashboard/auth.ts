/**
 * The dashboard's one secret: a token every request carries, as `?token=` (the URL printed at start),
 * the `X-VLA-Token` header (what the page's scripts send) or the cookie the first page load sets (what
 * <img>, <video> and EventSource send, as they cannot add headers). Actions must carry the header: a
 * cookie alone is what a forged cross-site request would have.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';

export const TOKEN_HEADER = 'x-vla-token';
export const TOKEN_COOKIE = 'vla_dashboard_token';
export const TOKEN_PARAM = 'token';

/** Where a request's token came from, or null when it carries none that matches. */
export type TokenSource = 'query' | 'header' | 'cookie';

/** 24 random bytes: 192 bits, URL-safe. */
export const newToken = (): string => randomBytes(24).toString('base64url');

const sha256 = (text: string) => createHash('sha256').update(text).digest();

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export class TokenCheck {
  private readonly digest: Buffer;

  constructor(readonly token: string) {
    this.digest = sha256(token);
  }

  /** Constant-time: how long the comparison takes says nothing about how much of a guess was right. */
  private matches(candidate: string | undefined): boolean {
    return candidate !== undefined && timingSafeEqual(sha256(candidate), this.digest);
  }

  /** Which of the request's carriers holds the token (the header first, as actions need it). */
  source(req: http.IncomingMessage, url: URL): TokenSource | null {
    const header = req.headers[TOKEN_HEADER];
    if (this.matches(Array.isArray(header) ? header[0] : header)) return 'header';
    if (this.matches(url.searchParams.get(TOKEN_PARAM) ?? undefined)) return 'query';
    if (this.matches(cookieValue(req.headers.cookie, TOKEN_COOKIE))) return 'cookie';
    return null;
  }

  /** The cookie that lets the page's media and event stream in after the first load. */
  cookie(): string {
    return `${TOKEN_COOKIE}=${this.token}; Path=/; HttpOnly; SameSite=Strict`;
  }
}
