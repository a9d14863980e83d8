// Docker's `ps --filter` semantics over container records: values of one key are ORed,
// different keys are ANDed.
import type { ContainerRecord } from '../types/domain.ts';
import { invalid } from '../util/errors.ts';

export type Filters = Record<string, string[]>;

const KEYS = new Set(['id', 'name', 'status', 'label', 'exited', 'ancestor']);
const STATUSES = new Set([
  'created',
  'running',
  'exited',
  'removing',
  'restarting',
  'paused',
  'dead',
]);

export function parseFilterArgs(args: readonly string[]): Filters {
  const f: Filters = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i <= 0) throw invalid('filter', `"${a}" is not KEY=VALUE`);
    (f[a.slice(0, i)] ??= []).push(a.slice(i + 1));
  }
  validateFilters(f);
  return f;
}

// The API's `filters` parameter, as JSON: Docker sends both {"k":["v"]} and the older
// {"k":{"v":true}}. Checking the keys is the caller's (containers and events differ).
export function parseFiltersJson(s: string | undefined): Filters {
  if (s === undefined || s === '') return {};
  let raw: unknown;
  try {
    raw = JSON.parse(s);
  } catch {
    throw invalid('filters', 'not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalid('filters', 'expected an object');
  const f: Filters = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (Array.isArray(v)) f[k] = v.map(String);
    else if (v && typeof v === 'object') f[k] = Object.keys(v);
    else throw invalid('filters', `value of "${k}" must be a list`);
  }
  return f;
}

export function validateFilters(f: Filters): void {
  for (const [k, vs] of Object.entries(f)) {
    if (!KEYS.has(k)) throw invalid('filter', `unknown key "${k}" (${[...KEYS].join(', ')})`);
    if (k === 'status')
      for (const v of vs) if (!STATUSES.has(v)) throw invalid('filter', `unknown status "${v}"`);
    if (k === 'exited')
      for (const v of vs)
        if (!/^-?\d+$/.test(v)) throw invalid('filter', `exited=${v} is not a number`);
  }
}

function dockerStatus(c: ContainerRecord): string {
  return c.state === 'starting' ? 'created' : c.state === 'stopping' ? 'running' : c.state;
}

export function matchFilters(c: ContainerRecord, f: Filters): boolean {
  for (const [k, vs] of Object.entries(f)) {
    if (vs.length === 0) continue;
    const ok = vs.some((v) => {
      switch (k) {
        case 'id':
          return c.id.startsWith(v);
        case 'name':
          return c.name.includes(v.replace(/^\//, ''));
        case 'status':
          return dockerStatus(c) === v;
        case 'exited':
          return c.state === 'exited' && c.exitCode === Number(v);
        case 'ancestor':
          return c.config.image === v || c.config.imageId.startsWith(v.replace(/^sha256:/, ''));
        case 'label': {
          const i = v.indexOf('=');
          return i < 0 ? v in c.config.labels : c.config.labels[v.slice(0, i)] === v.slice(i + 1);
        }
        default:
          return false;
      }
    });
    if (!ok) return false;
  }
  return true;
}
