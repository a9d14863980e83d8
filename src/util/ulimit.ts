import { invalid } from './errors.ts';

// docker's --ulimit form: name=soft[:hard].
export function parseUlimit(s: string): { name: string; soft: number; hard: number } {
  const m = /^([a-z]+)=(\d+)(?::(\d+))?$/.exec(s.trim());
  if (!m) throw invalid('ulimit', `"${s}" is not NAME=SOFT[:HARD]`);
  const soft = Number(m[2]);
  return { name: m[1] as string, soft, hard: m[3] === undefined ? soft : Number(m[3]) };
}
