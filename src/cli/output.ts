// Output on stdout: Docker-like aligned tables, --format templates and `--format json`.
import { parseTemplate, TemplateError } from './template.ts';
import { BerthError, errorMessage } from '../util/errors.ts';

// text/tabwriter with docker's padding of 3 spaces.
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
          .join('')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export function formatItems(
  items: readonly unknown[],
  format: string,
  defaultTable: () => string,
): string {
  if (!format || format === 'table') return defaultTable();
  if (format === 'json') return items.map((i) => JSON.stringify(i) + '\n').join('');
  try {
    const t = parseTemplate(format);
    if (t.table) {
      const rows = [t.header(), ...items.map((i) => t.render(i))].map((l) => l.split('\t'));
      return table(rows);
    }
    return items.map((i) => t.render(i) + '\n').join('');
  } catch (e) {
    if (e instanceof TemplateError)
      throw new BerthError('INVALID_ARGUMENT', `Invalid format: ${e.message}`, { field: 'format' });
    throw e;
  }
}

export function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// `inspect NAME...` as docker does it: every object that exists, as one JSON array (or one
// rendered template each); an error line for each that does not, then exit status 1.
export async function inspectEach(
  names: readonly string[],
  fetch: (name: string) => Promise<unknown>,
  format: string | undefined,
  out: (s: string) => void,
  exitWith: (code: number) => Error,
): Promise<void> {
  const t = format ? parseTemplate(format) : undefined;
  const items: unknown[] = [];
  let failed = false;
  for (const n of names) {
    try {
      items.push(await fetch(n));
    } catch (e) {
      failed = true;
      process.stderr.write(`Error: ${errorMessage(e)}\n`);
    }
  }
  if (t) for (const i of items) out(t.render(i) + '\n');
  else out(JSON.stringify(items, null, 4) + '\n');
  if (failed) throw exitWith(1);
}
