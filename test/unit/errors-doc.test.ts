// Keeps docs/errors.md in step with the error catalogue: every code documented once, with
// the class and HTTP status the API really uses.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, ERROR_CODES, type ErrorCode } from '../../src/util/errors.ts';
import { statusFor } from '../../src/api/errors.ts';

// Works from test/unit/ and from dist/test/unit/.
function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) {
    const up = dirname(d);
    assert.notEqual(up, d, 'package.json not found above the test');
    d = up;
  }
  return d;
}

interface Row {
  code: string;
  class: string;
  status: number;
  meaning: string;
}

function parseTable(md: string): Row[] {
  const lines = md.split('\n').filter((l) => l.trim().startsWith('|'));
  const cells = (l: string) =>
    l
      .trim()
      .replace(/^\||\|$/g, '')
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
  const [header, sep, ...body] = lines;
  assert.ok(header !== undefined && sep !== undefined, 'docs/errors.md has a table');
  assert.deepEqual(cells(header), ['code', 'class', 'HTTP status', 'meaning']);
  assert.ok(
    cells(sep).every((c) => /^:?-{3,}:?$/.test(c)),
    'second line is the separator',
  );
  return body.map((l) => {
    const [code = '', cls = '', status = '', meaning = ''] = cells(l);
    return { code: code.replace(/`/g, ''), class: cls, status: Number(status), meaning };
  });
}

const md = readFileSync(join(repoRoot(), 'docs', 'errors.md'), 'utf8');
const rows = parseTable(md);
const codes = Object.keys(ERROR_CODES) as ErrorCode[];

describe('docs/errors.md', () => {
  it('states that codes are stable', () => {
    assert.match(md, /a code never changes meaning and is never reused/);
  });

  it('documents each code exactly once', () => {
    const seen = rows.map((r) => r.code);
    assert.equal(new Set(seen).size, seen.length, `duplicate rows: ${seen.join(', ')}`);
  });

  it('documents exactly the codes in ERROR_CODES', () => {
    assert.deepEqual(new Set(rows.map((r) => r.code)), new Set(codes));
  });

  for (const code of codes) {
    it(`${code}: class and HTTP status match the code`, () => {
      const row = rows.find((r) => r.code === code);
      assert.ok(row, `${code} is documented`);
      const e = new BerthError(code, 'x');
      assert.equal(row.class, ERROR_CODES[code].class);
      assert.equal(row.status, statusFor(e));
      assert.ok(row.meaning.length > 0, `${code} has a meaning`);
    });
  }
});
