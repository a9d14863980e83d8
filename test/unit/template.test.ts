import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseTemplate, TemplateError } from '../../src/cli/template.ts';

const container = {
  ID: 'abc123',
  Name: 'Web',
  Names: ['web', 'front'],
  CreatedAt: '2024-01-01',
  State: { Pid: 42, Status: 'running', Health: null },
  Config: { Image: 'alpine', Env: ['A=1'] },
  Labels: { 'com.example.tier': 'db', empty: '' },
};

const r = (src: string, dot: unknown = container) => parseTemplate(src).render(dot);

describe('parseTemplate rendering', () => {
  it('renders field paths and literal text', () => {
    assert.equal(r('id={{.ID}} name={{ .Name }}'), 'id=abc123 name=Web');
  });

  it('renders nested field paths', () => {
    assert.equal(r('{{.State.Pid}}/{{.State.Status}}/{{.Config.Image}}'), '42/running/alpine');
  });

  it('renders a missing field, a missing nested field and null as <no value>', () => {
    assert.equal(r('{{.Nope}}'), '<no value>');
    assert.equal(r('{{.State.Nope.Deeper}}'), '<no value>');
    assert.equal(r('{{.ID.Length}}'), '<no value>');
    assert.equal(r('{{.State.Health}}'), '<no value>');
  });

  it('renders arrays and maps the way Go prints them', () => {
    assert.equal(r('{{.Names}}'), '[web front]');
    assert.equal(r('{{.State}}'), 'map[Health:<no value> Pid:42 Status:running]');
  });

  it('renders `.` as the whole value', () => {
    assert.equal(r('{{.}}', 'plain'), 'plain');
  });

  it('json as a function, in pipe form, and on the whole dot', () => {
    const want = JSON.stringify(container.Config);
    assert.equal(r('{{json .Config}}'), want);
    assert.equal(r('{{.Config | json}}'), want);
    assert.equal(r('{{ .Config|json }}'), want);
    assert.deepEqual(JSON.parse(r('{{json .}}')), container);
    assert.equal(r('{{json .Nope}}'), 'null');
    assert.equal(r('{{json .Names}}'), '["web","front"]');
  });

  it('index looks up map keys and array positions', () => {
    assert.equal(r('{{index .Labels "com.example.tier"}}'), 'db');
    assert.equal(r('{{index .Labels "empty"}}'), '');
    assert.equal(r('{{index .Labels "missing"}}'), '<no value>');
    assert.equal(r('{{index .Names 1}}'), 'front');
    assert.equal(r('{{index .State "Pid"}}'), '42');
  });

  it('join joins arrays with the separator', () => {
    assert.equal(r('{{join .Names ","}}'), 'web,front');
    assert.equal(r('{{join .Names ", "}}'), 'web, front');
  });

  it('upper, lower, title and len', () => {
    assert.equal(r('{{upper .Name}}'), 'WEB');
    assert.equal(r('{{lower .Name}}'), 'web');
    assert.equal(r('{{.Name | lower | upper}}'), 'WEB');
    assert.equal(r('{{title .State.Status}}'), 'Running');
    assert.equal(r('{{len .Names}}'), '2');
    assert.equal(r('{{len .Labels}}'), '2');
  });

  it('turns escaped \\t and \\n into real tabs and newlines', () => {
    assert.equal(r('{{.ID}}\\t{{.Name}}\\n'), 'abc123\tWeb\n');
  });

  it('is not a table without the prefix', () => {
    const t = parseTemplate('{{.ID}}');
    assert.equal(t.table, false);
  });
});

describe('parseTemplate tables', () => {
  it('strips the table prefix and renders rows', () => {
    const t = parseTemplate('table {{.ID}}\\t{{.Name}}');
    assert.equal(t.table, true);
    assert.equal(t.render(container), 'abc123\tWeb');
  });

  it('derives upper-case headers from the last field name', () => {
    const t = parseTemplate('table {{.ID}}\\t{{.State.Pid}}\\t{{.CreatedAt}}');
    assert.equal(t.header(), 'ID\tPID\tCREATED AT');
  });

  it('derives headers through functions and pipes', () => {
    assert.equal(parseTemplate('table {{json .Config}}').header(), 'CONFIG');
    assert.equal(parseTemplate('table {{.Names | json}}').header(), 'NAMES');
  });

  it('keeps literal text in the header', () => {
    assert.equal(parseTemplate('table pid={{.State.Pid}}').header(), 'pid=PID');
  });
});

describe('parseTemplate errors', () => {
  it('rejects an unclosed action at parse time', () => {
    assert.throws(() => parseTemplate('{{.ID'), TemplateError);
    assert.throws(() => parseTemplate('{{.ID}} and {{.Name'), TemplateError);
    assert.throws(() => parseTemplate('table {{.ID}}\\t{{.Name'), TemplateError);
  });

  it('rejects an unknown function', () => {
    assert.throws(() => parseTemplate('{{nosuch .ID}}').render(container), TemplateError);
    assert.throws(() => parseTemplate('{{.ID | nosuch}}').render(container), TemplateError);
  });

  it('rejects an unknown bare word as an argument', () => {
    assert.throws(() => parseTemplate('{{nosuch}}').render(container), TemplateError);
    assert.throws(() => parseTemplate('{{json bogus}}').render(container), TemplateError);
  });

  it('rejects arguments to something that is not a function', () => {
    assert.throws(() => parseTemplate('{{.ID .Name}}').render(container), /not a function/);
  });

  it('rejects an empty pipeline stage', () => {
    assert.throws(() => parseTemplate('{{.ID | }}').render(container), TemplateError);
  });

  it('rejects unknown functions and bare words at parse time, before any row', () => {
    assert.throws(() => parseTemplate('table {{nosuch .ID}}'), TemplateError);
    assert.throws(() => parseTemplate('{{.ID | jsn}}'), TemplateError);
    assert.throws(() => parseTemplate('{{json .ID bare}}'), TemplateError);
  });

  it('turns a broken string literal into a TemplateError', () => {
    assert.throws(() => parseTemplate('{{json "\\q"}}'), TemplateError);
    assert.throws(() => parseTemplate('{{index .Labels "abc}}').render(container), TemplateError);
  });
});
