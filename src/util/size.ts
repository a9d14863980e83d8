import { invalid } from './errors.ts';

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i;

// Docker's size grammar: a number with an optional binary unit (b, k, m, g, t).
export function parseSize(s: string, field: string): number {
  const m = SIZE.exec(s.trim());
  if (!m) throw invalid(field, `"${s}" is not a size (like 10m, 512k, 1g)`);
  const mult =
    { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase()] ?? 1;
  return Math.floor(Number(m[1]) * mult);
}
