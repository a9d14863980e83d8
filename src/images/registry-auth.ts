// The pure half of registry authentication: WWW-Authenticate challenges (RFC 7235), the
// token request of the distribution token spec, its answer, and a cache of tokens per
// scope. The HTTP half lives in registry.ts.
import { BerthError } from '../util/errors.ts';

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export interface Challenge {
  // Lower-cased: 'bearer', 'basic'.
  readonly scheme: string;
  // Parameter names lower-cased, values as sent.
  readonly params: Readonly<Record<string, string>>;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

// One header value may hold several challenges (`Bearer realm="a",scope="b", Basic
// realm="c"`), and a parameter value may hold commas inside quotes, so this is a small
// scanner rather than a split.
export function parseChallenges(headers: readonly string[] | string | undefined): Challenge[] {
  const out: { scheme: string; params: Record<string, string> }[] = [];
  const values = headers === undefined ? [] : typeof headers === 'string' ? [headers] : headers;
  for (const s of values) {
    let i = 0;
    let current: { scheme: string; params: Record<string, string> } | undefined;
    const skipWs = () => {
      while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    };
    const token = () => {
      const start = i;
      while (i < s.length && TCHAR.test(s[i] ?? '')) i++;
      return s.slice(start, i);
    };
    const quoted = () => {
      let v = '';
      i++; // opening quote
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        v += s[i];
        i++;
      }
      i++; // closing quote
      return v;
    };
    while (i < s.length) {
      while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
      if (i >= s.length) break;
      const t = token();
      if (t === '') {
        i++;
        continue;
      }
      skipWs();
      if (s[i] === '=' && current !== undefined) {
        i++;
        skipWs();
        const value = s[i] === '"' ? quoted() : token();
        current.params[t.toLowerCase()] = value;
      } else {
        // A token not followed by '=' starts the next challenge. (token68 forms such as
        // `Basic abc==` end up as an empty parameter: berth needs nothing from them.)
        current = { scheme: t.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

// Bearer where offered: it never sends the password to the registry itself.
export function pickChallenge(challenges: readonly Challenge[]): Challenge | undefined {
  return (
    challenges.find((c) => c.scheme === 'bearer' && c.params['realm']) ??
    challenges.find((c) => c.scheme === 'basic')
  );
}

export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

// A push reads too (a HEAD for each blob that may already be there), and docker asks for
// both in one scope, which is what token servers are written for.
export function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

// The token endpoint with the registry's service and the scopes asked for.
export function tokenRequestUrl(challenge: Challenge, scopes: readonly string[]): URL {
  const realm = challenge.params['realm'];
  if (realm === undefined) {
    throw new BerthError('REGISTRY_UNAVAILABLE', 'The registry asked for a token without a realm');
  }
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new BerthError('REGISTRY_UNAVAILABLE', `The registry's token realm "${realm}" is no URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new BerthError('REGISTRY_UNAVAILABLE', `The registry's token realm "${realm}" is no URL`);
  }
  const service = challenge.params['service'];
  if (service !== undefined) url.searchParams.set('service', service);
  for (const s of scopes) url.searchParams.append('scope', s);
  return url;
}

export interface Token {
  readonly token: string;
  // Epoch milliseconds after which the token is not used again.
  readonly expiresAt: number;
}

// The spec's floor on a token's life, and the margin kept so that a token does not lapse
// between being picked and reaching the registry.
const MIN_TOKEN_SECONDS = 60;
const EXPIRY_MARGIN_MS = 10_000;

export function parseTokenResponse(body: unknown, now: number): Token {
  if (typeof body !== 'object' || body === null) {
    throw new BerthError('REGISTRY_UNAVAILABLE', 'The token server answered with no JSON object');
  }
  const b = body as Record<string, unknown>;
  const token =
    typeof b['token'] === 'string' && b['token'] !== ''
      ? b['token']
      : typeof b['access_token'] === 'string'
        ? b['access_token']
        : '';
  if (token === '') {
    throw new BerthError('REGISTRY_UNAVAILABLE', 'The token server answered without a token');
  }
  const expiresIn =
    typeof b['expires_in'] === 'number' && b['expires_in'] >= MIN_TOKEN_SECONDS
      ? b['expires_in']
      : MIN_TOKEN_SECONDS;
  const issued = typeof b['issued_at'] === 'string' ? Date.parse(b['issued_at']) : NaN;
  // A server clock far from ours would make issued_at useless; trust only a sane one.
  const issuedAt = Number.isFinite(issued) && Math.abs(issued - now) < 3600_000 ? issued : now;
  const life = expiresIn * 1000;
  return { token, expiresAt: issuedAt + life - Math.min(EXPIRY_MARGIN_MS, life / 10) };
}

// Tokens by (registry, realm, service, scope); a fetch in flight is shared, so blobs
// pulled in parallel ask the token server once.
export class TokenCache {
  private readonly tokens = new Map<string, Token>();
  private readonly inflight = new Map<string, Promise<Token>>();

  static key(registry: string, challenge: Challenge, scope: string): string {
    return [registry, challenge.params['realm'] ?? '', challenge.params['service'] ?? '', scope]
      .map((s) => encodeURIComponent(s))
      .join(' ');
  }

  get(key: string, now: number): string | undefined {
    const t = this.tokens.get(key);
    if (t === undefined) return undefined;
    if (t.expiresAt <= now) {
      this.tokens.delete(key);
      return undefined;
    }
    return t.token;
  }

  async fetch(key: string, now: () => number, fetcher: () => Promise<Token>): Promise<string> {
    const cached = this.get(key, now());
    if (cached !== undefined) return cached;
    let p = this.inflight.get(key);
    if (p === undefined) {
      p = fetcher().finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
      const t = await p;
      this.tokens.set(key, t);
      return t.token;
    }
    return (await p).token;
  }

  invalidate(key: string): void {
    this.tokens.delete(key);
  }

  // Forget every token for a registry, after a login or logout changed its credentials.
  forget(registry: string): void {
    const prefix = `${encodeURIComponent(registry)} `;
    for (const k of this.tokens.keys()) if (k.startsWith(prefix)) this.tokens.delete(k);
  }
}
