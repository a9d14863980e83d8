// Query parameters and filters as the Docker Engine API takes them, for the images,
// volumes and networks endpoints: booleans in Go's forms, `filters` as JSON in either of
// Docker's two shapes, label filters that must all match, image reference patterns.
import { parseFiltersJson, type Filters } from '../../engine/index.ts';
import { invalid } from '../../util/errors.ts';

export type Query = Record<string, string | string[] | undefined>;

// The first value of a query parameter (a repeated one is an array).
export function qs(q: Query, key: string): string | undefined {
  const v = q[key];
  return Array.isArray(v) ? v[0] : v;
}

// Every value of a repeated parameter.
export function qsAll(q: Query, key: string): string[] {
  const v = q[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

// Docker's BoolValue: absent, '', 0, no, false and none are false; anything else is true.
export function qBool(q: Query, key: string): boolean {
  const v = (qs(q, key) ?? '').trim().toLowerCase();
  return !(v === '' || v === '0' || v === 'no' || v === 'false' || v === 'none');
}

// `filters`, with its keys checked against what the endpoint knows.
export function dockerFilters(q: Query, known: readonly string[]): Filters {
  const f = parseFiltersJson(qs(q, 'filters'));
  for (const k of Object.keys(f)) {
    if (!known.includes(k))
      throw invalid('filters', `unknown filter "${k}" (known: ${known.join(', ')})`);
  }
  return f;
}

// A boolean filter (dangling=true): undefined when absent.
export function boolFilter(f: Filters, key: string): boolean | undefined {
  const vs = f[key];
  if (vs === undefined || vs.length === 0) return undefined;
  const set = new Set(
    vs.map((v) => {
      const l = v.toLowerCase();
      if (l === 'true' || l === '1') return true;
      if (l === 'false' || l === '0') return false;
      throw invalid('filters', `${key}=${v}: the value must be true or false`);
    }),
  );
  if (set.size > 1) throw invalid('filters', `${key} is given both true and false`);
  return set.has(true);
}

// label=KEY or label=KEY=VALUE: every one given must match (Docker ANDs labels).
export function labelsMatch(
  labels: Readonly<Record<string, string>>,
  wanted: readonly string[] | undefined,
): boolean {
  for (const w of wanted ?? []) {
    const i = w.indexOf('=');
    if (i < 0 ? !(w in labels) : labels[w.slice(0, i)] !== w.slice(i + 1)) return false;
  }
  return true;
}

// label!=KEY or label!=KEY=VALUE: none may match.
export function labelsExclude(
  labels: Readonly<Record<string, string>>,
  unwanted: readonly string[] | undefined,
): boolean {
  for (const w of unwanted ?? []) {
    const i = w.indexOf('=');
    if (i < 0 ? w in labels : labels[w.slice(0, i)] === w.slice(i + 1)) return false;
  }
  return true;
}

// Go's path.Match, which Docker's reference filter uses: * and ? do not cross a /,
// [...] is a class ([^...] or [!...] negated).
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw invalid('filters', `reference "${pattern}" has an unclosed [`);
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith('^') || body.startsWith('!');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += (pattern[++i] as string).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

// Docker's `until` and `since` filter times: RFC 3339 or Unix seconds.
export function filterTime(v: string, key: string): number {
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw invalid('filters', `${key}=${v} is not a time`);
  return t;
}

// A JSON body's field of the given type, or undefined when absent or null.
export function field<T extends 'string' | 'boolean' | 'object' | 'number'>(
  body: Record<string, unknown>,
  name: string,
  type: T,
):
  | (T extends 'string'
      ? string
      : T extends 'boolean'
        ? boolean
        : T extends 'number'
          ? number
          : Record<string, unknown>)
  | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (type === 'object' ? typeof v !== 'object' || Array.isArray(v) : typeof v !== type)
    throw invalid(name, `must be ${type === 'object' ? 'an' : 'a'} ${type}`);
  return v as never;
}

// A JSON body's map of strings (Labels, DriverOpts, Options).
export function stringMap(
  body: Record<string, unknown>,
  name: string,
): Record<string, string> | undefined {
  const m = field(body, name, 'object');
  if (m === undefined) return undefined;
  for (const [k, v] of Object.entries(m))
    if (typeof v !== 'string') throw invalid(`${name}.${k}`, 'must be a string');
  return m as Record<string, string>;
}

// The request body as an object; an absent body is an empty one.
export function bodyObject(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || body === '') return {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw invalid('body', 'must be a JSON object');
  return body as Record<string, unknown>;
}
