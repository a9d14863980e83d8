// The subset of Go's text/template that docker users write in --format: field paths
// ({{.State.Pid}}), the json, upper, lower, title, join, index, len, println functions, pipes
// ({{.Config | json}}), and docker's `table` prefix. Unknown syntax is an error, never a
// silently wrong output.

type Value = unknown;
type Fn = (...args: Value[]) => Value;

const FUNCS: Record<string, Fn> = {
  json: (v) => JSON.stringify(v ?? null),
  upper: (v) => String(v).toUpperCase(),
  lower: (v) => String(v).toLowerCase(),
  title: (v) => String(v).replace(/\b\w/g, (c) => c.toUpperCase()),
  join: (v, sep) => (Array.isArray(v) ? v.join(String(sep)) : String(v)),
  index: (v, ...keys) =>
    keys.reduce<Value>((acc, k) => (acc as Record<string, Value> | undefined)?.[String(k)], v),
  len: (v) =>
    Array.isArray(v) || typeof v === 'string'
      ? v.length
      : v && typeof v === 'object'
        ? Object.keys(v).length
        : 0,
  println: (...a) => a.map(render).join(' ') + '\n',
  print: (...a) => a.map(render).join(''),
};

export class TemplateError extends Error {}

function render(v: Value): string {
  if (v === undefined || v === null) return '<no value>';
  if (Array.isArray(v)) return `[${v.map(render).join(' ')}]`;
  if (typeof v === 'object') {
    // Go prints a map with its keys sorted.
    return `map[${Object.entries(v as Record<string, Value>)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, x]) => `${k}:${render(x)}`)
      .join(' ')}]`;
  }
  return String(v);
}

function tokenize(expr: string): string[] {
  const out: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|\||[^\s|]+)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(expr)) !== null) out.push(m[1] as string);
  if (out.join('').replace(/\s/g, '') !== expr.replace(/\s/g, ''))
    throw new TemplateError(`cannot parse "${expr}"`);
  return out;
}

function evalArg(tok: string, dot: Value): Value {
  if (tok === '.') return dot;
  if (tok.startsWith('.')) {
    return tok
      .slice(1)
      .split('.')
      .reduce<Value>((acc, k) => {
        if (acc === null || acc === undefined || typeof acc !== 'object') return undefined;
        return (acc as Record<string, Value>)[k];
      }, dot);
  }
  if (tok.startsWith('"')) {
    try {
      return JSON.parse(tok) as string;
    } catch {
      throw new TemplateError(`bad string literal ${tok}`);
    }
  }
  if (/^-?\d+$/.test(tok)) return Number(tok);
  throw new TemplateError(`unknown argument "${tok}"`);
}

function evalCommand(toks: string[], dot: Value, piped: Value[]): Value {
  const [head, ...rest] = toks;
  if (head === undefined) throw new TemplateError('empty command');
  const fn = FUNCS[head];
  if (fn) return fn(...rest.map((t) => evalArg(t, dot)), ...piped);
  if (rest.length > 0) throw new TemplateError(`"${head}" is not a function`);
  return evalArg(head, dot);
}

function commands(expr: string): string[][] {
  const cmds: string[][] = [[]];
  for (const t of tokenize(expr.trim())) {
    if (t === '|') cmds.push([]);
    else (cmds[cmds.length - 1] as string[]).push(t);
  }
  return cmds;
}

const isOperand = (t: string) =>
  t === '.' || t.startsWith('.') || t.startsWith('"') || /^-?\d+$/.test(t);

// Checks an action without data, so a typo fails before any output, even with no rows.
function checkAction(expr: string): void {
  for (const [head, ...rest] of commands(expr)) {
    if (head === undefined) throw new TemplateError(`empty command in "${expr}"`);
    if (!(head in FUNCS) && !isOperand(head))
      throw new TemplateError(`function "${head}" not defined`);
    if (!(head in FUNCS) && rest.length > 0) throw new TemplateError(`"${head}" is not a function`);
    for (const a of rest) {
      if (!isOperand(a)) throw new TemplateError(`unknown argument "${a}"`);
      if (a.startsWith('"')) evalArg(a, undefined);
    }
    if (head.startsWith('"')) evalArg(head, undefined);
  }
}

function evalAction(expr: string, dot: Value): string {
  const cmds = commands(expr);
  let v: Value = undefined;
  cmds.forEach((c, i) => {
    v = evalCommand(c, dot, i === 0 ? [] : [v]);
  });
  return render(v);
}

export interface Template {
  readonly table: boolean;
  render(dot: Value): string;
  header(): string;
}

export function parseTemplate(src: string): Template {
  const table = src.startsWith('table');
  const body = (table ? src.slice(5).trimStart() : src).replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  const parts: { text?: string; action?: string }[] = [];
  const re = /\{\{-?\s*(.*?)\s*-?\}\}/gs;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body)) !== null) {
    if (m.index > last) parts.push({ text: body.slice(last, m.index) });
    parts.push({ action: m[1] as string });
    last = re.lastIndex;
  }
  if (last < body.length) parts.push({ text: body.slice(last) });
  for (const p of parts)
    if (p.text?.includes('{{')) throw new TemplateError(`unclosed action in "${src}"`);
  // Validate once up front so a typo fails before any output.
  for (const p of parts) if (p.action !== undefined) checkAction(p.action);
  return {
    table,
    render: (dot) => parts.map((p) => p.text ?? evalAction(p.action as string, dot)).join(''),
    // Docker derives table headers from the field names, upper-cased.
    header: () =>
      parts
        .map((p) => {
          if (p.text !== undefined) return p.text;
          const last =
            tokenize(p.action as string)
              .filter((t) => t.startsWith('.'))
              .pop() ??
            p.action ??
            '';
          return (
            last
              .replace(/^\./, '')
              .split('.')
              .pop()
              ?.replace(/([a-z])([A-Z])/g, '$1 $2')
              .toUpperCase() ?? ''
          );
        })
        .join(''),
  };
}
