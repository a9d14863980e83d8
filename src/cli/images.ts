// `berth pull|push|load|save|images|rmi|tag|history|import|login|logout` and `berth image
// ...`: docker's verbs, flags and output shapes for images and registry logins.
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type {
  BerthClient,
  ImageDeleteItem,
  ImageHistoryItem,
  ImageSummary,
} from '../client/index.ts';
import { BerthError, errorMessage } from '../util/errors.ts';
import { formatItems, inspectEach, table, truncate } from './output.ts';
import { displayProgress, DISCARD, humanSize, type ProgressOutput } from './progress.ts';

const DEFAULT_REGISTRY = 'docker.io';

// docker's units.HumanDuration, as `images` and `history` show ages.
export function humanDuration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const minutes = Math.floor(s / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(s / 3600 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(s / 3600 / 24 / 365)} years`;
}

function since(created: number, now = Date.now()): string {
  return `${humanDuration(now / 1000 - created)} ago`;
}

// Go's time.Time.String() in UTC, the CreatedAt docker's `images --format` shows.
function goTime(unixSeconds: number): string {
  const iso = new Date(unixSeconds * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000 UTC`;
}

function rfc3339(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// docker's TruncateID: the first 12 hex digits, without the algorithm.
export function shortId(id: string): string {
  const i = id.indexOf(':');
  return (i < 0 ? id : id.slice(i + 1)).slice(0, 12);
}

// Splits NAME[:TAG][@DIGEST]; a colon is a tag only after the last slash (not a port).
function splitReference(s: string): { name: string; tag?: string; digest?: string } {
  const at = s.indexOf('@');
  const rest = at < 0 ? s : s.slice(0, at);
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  const r: { name: string; tag?: string; digest?: string } = {
    name: colon > slash ? rest.slice(0, colon) : rest,
  };
  if (colon > slash) r.tag = rest.slice(colon + 1);
  if (at >= 0) r.digest = s.slice(at + 1);
  return r;
}

// `busybox` as `docker.io/library/busybox`: a first component with a dot or a colon, or
// `localhost`, names a registry (docker's rule).
function qualifiedName(name: string): string {
  const first = name.indexOf('/');
  const head = first < 0 ? '' : name.slice(0, first);
  if (first >= 0 && (/[.:]/.test(head) || head === 'localhost' || head !== head.toLowerCase())) {
    return head === 'index.docker.io' ? `${DEFAULT_REGISTRY}/${name.slice(first + 1)}` : name;
  }
  return `${DEFAULT_REGISTRY}/${name.includes('/') ? name : `library/${name}`}`;
}

function familiarName(name: string): string {
  const q = qualifiedName(name);
  if (!q.startsWith(`${DEFAULT_REGISTRY}/`)) return q;
  const path = q.slice(DEFAULT_REGISTRY.length + 1);
  return path.startsWith('library/') && path.split('/').length === 2
    ? path.slice('library/'.length)
    : path;
}

// The fully qualified reference docker prints after a pull or push:
// docker.io/library/busybox:latest.
export function qualifiedReference(s: string): string {
  const r = splitReference(s);
  const tag = r.tag ?? (r.digest === undefined ? 'latest' : undefined);
  return `${qualifiedName(r.name)}${tag === undefined ? '' : `:${tag}`}${
    r.digest === undefined ? '' : `@${r.digest}`
  }`;
}

// TARGET of `tag`: a repository and a tag (latest when none); never a digest.
export function parseTagTarget(s: string): { repo: string; tag: string } {
  const r = splitReference(s);
  if (r.digest !== undefined)
    throw new BerthError('INVALID_ARGUMENT', 'refusing to create a tag with a digest reference', {
      field: 'target',
    });
  if (r.name === '' || r.tag === '')
    throw new BerthError('INVALID_ARGUMENT', `Invalid reference format: "${s}"`, {
      field: 'target',
    });
  return { repo: r.name, tag: r.tag ?? 'latest' };
}

// Where `save` writes: the -o file, or stdout unless that is a terminal (docker's refusal).
export function saveDestination(
  output: string | undefined,
  stdoutIsTTY: boolean,
): { file: string } | 'stdout' {
  if (output !== undefined && output !== '' && output !== '-') return { file: output };
  if (stdoutIsTTY)
    throw new BerthError(
      'INVALID_ARGUMENT',
      'cowardly refusing to save to a terminal. Use the -o flag or redirect',
      { field: 'output' },
    );
  return 'stdout';
}

// Go's path.Match for the glob characters docker users write: `*` and `?` within one path
// component.
function glob(pattern: string, s: string): boolean {
  const re = pattern.replace(/[.+^${}()|[\]\\*?]/g, (c) =>
    c === '*' ? '[^/]*' : c === '?' ? '[^/]' : `\\${c}`,
  );
  return new RegExp(`^${re}$`).test(s);
}

// docker's `images REPO[:TAG]`: the repository (familiar or fully qualified, globs allowed)
// and, when given, the tag.
export function matchesReference(
  row: Pick<ImageSummary, 'Repository' | 'Tag'>,
  pattern: string,
): boolean {
  if (row.Repository === '<none>') return false;
  const slash = pattern.lastIndexOf('/');
  const colon = pattern.lastIndexOf(':');
  const repoPattern = colon > slash ? pattern.slice(0, colon) : pattern;
  const tagPattern = colon > slash ? pattern.slice(colon + 1) : undefined;
  const names = new Set([
    row.Repository,
    familiarName(row.Repository),
    qualifiedName(row.Repository),
  ]);
  if (![...names].some((n) => glob(repoPattern, n))) return false;
  return tagPattern === undefined || glob(tagPattern, row.Tag);
}

function digestOf(i: ImageSummary): string {
  if (i.Digest) return i.Digest;
  const own = (i.RepoDigests ?? []).find((d) => d.startsWith(`${i.Repository}@`));
  return own ? own.slice(own.indexOf('@') + 1) : '<none>';
}

// The fields of `docker images --format`.
export function imageRow(i: ImageSummary, trunc: boolean, now = Date.now()) {
  return {
    ID: trunc ? shortId(i.Id) : i.Id,
    Repository: i.Repository || '<none>',
    Tag: i.Tag || '<none>',
    Digest: digestOf(i),
    CreatedSince: since(i.Created, now),
    CreatedAt: goTime(i.Created),
    Size: humanSize(i.Size, 3),
    VirtualSize: humanSize(i.Size, 3),
    SharedSize: 'N/A',
    UniqueSize: 'N/A',
    Containers: i.Containers === undefined || i.Containers < 0 ? 'N/A' : String(i.Containers),
  };
}

// The fields of `docker history --format`.
export function historyRow(
  h: ImageHistoryItem,
  o: { trunc: boolean; human: boolean },
  now = Date.now(),
) {
  const createdBy = h.CreatedBy.replace(/\t/g, ' ');
  return {
    ID: o.trunc && h.Id !== '<missing>' ? shortId(h.Id) : h.Id,
    CreatedSince: o.human ? since(h.Created, now) : rfc3339(h.Created),
    CreatedAt: rfc3339(h.Created),
    CreatedBy: o.trunc ? truncate(createdBy, 45) : createdBy,
    Size: o.human ? humanSize(h.Size, 3) : String(h.Size),
    Comment: h.Comment,
  };
}

function deleteLine(d: ImageDeleteItem, lower: boolean): string {
  if (d.Untagged !== undefined) return `${lower ? 'untagged' : 'Untagged'}: ${d.Untagged}\n`;
  return `${lower ? 'deleted' : 'Deleted'}: ${d.Deleted ?? ''}\n`;
}

// pflag's booleans: -H=false, --human=0, ...; undefined for anything else.
export function parseBool(v: string): boolean | undefined {
  const s = v.replace(/^=/, '').toLowerCase();
  if (['1', 't', 'true'].includes(s)) return true;
  if (['0', 'f', 'false'].includes(s)) return false;
  return undefined;
}

// `history -H IMAGE`: commander gives an optional option value the next word, where pflag
// would take -H as a bare boolean; a word that is not a boolean is then the image.
export function historyArgs(
  image: string | undefined,
  human: string | boolean,
): { image: string | undefined; human: boolean } {
  if (typeof human === 'boolean') return { image, human };
  const b = parseBool(human);
  if (b !== undefined) return { image, human: b };
  if (image === undefined) return { image: human, human: true };
  throw new BerthError('INVALID_ARGUMENT', `Invalid human: "${human}" is not true or false`, {
    field: 'human',
  });
}

// Opens a file to upload, so that a missing one is an error naming it before any request.
async function openInput(file: string, field: string): Promise<ReadStream> {
  const stream = createReadStream(file);
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${file}: ${e.code ?? e.message}`, {
          field,
        }),
      ),
    );
  });
  return stream;
}

// Writes a stream to a file through a temporary file beside it, renamed at the end, so a
// failed save never leaves half an archive under the name asked for (docker does the same).
async function writeFileAtomically(file: string, src: Readable): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.berth-${process.pid}-${Date.now()}`);
  try {
    await pipeline(src, createWriteStream(tmp, { flags: 'wx' }));
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code;
    if (e instanceof BerthError) throw e;
    if (code === 'ECONNRESET' || (e as Error).message === 'aborted')
      throw new BerthError('DAEMON_UNAVAILABLE', `Connection to berthd lost while saving ${file}`);
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid output: ${file}: ${code ?? errorMessage(e)}`,
      {
        field: 'output',
      },
    );
  }
}

async function copyToStdout(src: AsyncIterable<unknown>): Promise<void> {
  try {
    for await (const chunk of src) {
      if (!process.stdout.write(chunk as Buffer))
        await new Promise((r) => process.stdout.once('drain', r));
    }
  } catch (e) {
    if (e instanceof BerthError) throw e;
    throw new BerthError(
      'DAEMON_UNAVAILABLE',
      `Connection to berthd lost while saving: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
    );
  }
}

// One line of stdin (end of input answers ''); leaves stdin paused for a later read.
function readLine(): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (s: string) => {
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      process.stdin.pause();
      resolve(s);
    };
    const onData = (b: Buffer) => {
      buf += b.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) done(buf.slice(0, i).replace(/\r$/, ''));
    };
    const onEnd = () => done(buf);
    process.stdin.on('data', onData);
    process.stdin.once('end', onEnd);
    process.stdin.resume();
  });
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// docker run's --pull: an image that is not here is pulled (missing, the default), always
// pulled first (always), or never (never: the create fails as it would).
export type PullPolicy = 'missing' | 'always' | 'never';

export function parsePullPolicy(v: string | undefined): PullPolicy {
  const p = v ?? 'missing';
  if (p !== 'missing' && p !== 'always' && p !== 'never')
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid pull: "${p}" is not missing, always or never`,
      {
        field: 'pull',
      },
    );
  return p;
}

// Creates through `create`, pulling as the policy says; progress goes to stderr, so that
// `run -d` prints only the id on stdout, as docker's does.
export async function createPulling<T>(
  client: BerthClient,
  image: string,
  policy: PullPolicy,
  platform: string | undefined,
  create: () => Promise<T>,
): Promise<T> {
  const err: ProgressOutput = {
    write: (s: string) => process.stderr.write(s),
    get isTTY() {
      return process.stderr.isTTY === true;
    },
    get columns() {
      return process.stderr.columns;
    },
  };
  const pull = async () => displayProgress(await client.pullImage(image, platform), err);
  if (policy === 'always') await pull();
  try {
    return await create();
  } catch (e) {
    const byId = /^(sha256:)?[0-9a-f]{12,64}$/.test(image);
    if (policy !== 'missing' || byId || !(e instanceof BerthError) || e.code !== 'IMAGE_NOT_FOUND')
      throw e;
    process.stderr.write(`Unable to find image '${qualifiedReference(image)}' locally\n`);
    await pull();
    return create();
  }
}

export function addImageCommands(
  program: Command,
  client: () => BerthClient,
  out: (s: string) => void,
  exitWith: (code: number) => Error,
): void {
  // Progress goes where `out` goes; whether that is a terminal is stdout's to say.
  const progressOut: ProgressOutput = {
    write: out,
    get isTTY() {
      return process.stdout.isTTY === true;
    },
    get columns() {
      return process.stdout.columns;
    },
  };

  // docker's multi-image verbs: go on past a failure, report each, fail at the end.
  const forEach = async (names: string[], fn: (n: string) => Promise<void>) => {
    let failed: unknown;
    for (const n of names) {
      try {
        await fn(n);
      } catch (e) {
        failed = e;
        if (names.length > 1) process.stderr.write(`Error: ${errorMessage(e)}\n`);
      }
    }
    if (failed !== undefined) throw names.length > 1 ? exitWith(1) : failed;
  };

  // A password typed on the terminal, not echoed.
  const readSecret = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const stdin = process.stdin;
      let s = '';
      const finish = (err?: Error) => {
        stdin.off('data', onData);
        stdin.setRawMode(false);
        stdin.pause();
        out('\n');
        if (err) reject(err);
        else resolve(s);
      };
      const onData = (b: Buffer) => {
        for (const ch of b.toString('utf8')) {
          if (ch === '\r' || ch === '\n') return finish();
          if (ch === '\x03') return finish(exitWith(130));
          if (ch === '\x04') {
            if (s === '') return finish();
          } else if (ch === '\x7f' || ch === '\b') s = [...s].slice(0, -1).join('');
          else if (ch === '\x15') s = '';
          else s += ch;
        }
      };
      stdin.setRawMode(true);
      stdin.on('data', onData);
      stdin.resume();
    });

  const image = program.command('image').description('Manage images');

  // ---- pull / push ----

  const pull = (c: Command) =>
    c
      .description('Download an image from a registry')
      .option('--platform <os/arch[/variant]>', 'the platform to pull, like linux/arm64')
      .option('-q, --quiet', 'print only the image reference')
      .argument('<name[:tag|@digest]>')
      .action(async (name: string, f: { platform?: string; quiet?: boolean }) => {
        const messages = await client().pullImage(name, f.platform);
        const r = splitReference(name);
        if (!f.quiet && r.tag === undefined && r.digest === undefined)
          out('Using default tag: latest\n');
        await displayProgress(messages, f.quiet ? DISCARD : progressOut);
        out(`${qualifiedReference(name)}\n`);
      });
  pull(program.command('pull'));
  pull(image.command('pull'));

  const push = (c: Command) =>
    c
      .description('Upload an image to a registry (log in first with berth login)')
      .option('-q, --quiet', 'print only the image reference')
      .argument('<name[:tag]>')
      .action(async (name: string, f: { quiet?: boolean }) => {
        const messages = await client().pushImage(name);
        const r = splitReference(name);
        if (!f.quiet && r.tag === undefined && r.digest === undefined)
          out('Using default tag: latest\n');
        await displayProgress(messages, f.quiet ? DISCARD : progressOut);
        if (f.quiet) out(`${qualifiedReference(name)}\n`);
      });
  push(program.command('push'));
  push(image.command('push'));

  // ---- load / save / import ----

  const load = (c: Command) =>
    c
      .description('Load images from a tar archive (docker save or OCI layout) or stdin')
      .option('-i, --input <file>', 'read from a tar archive file instead of stdin')
      .option('-q, --quiet', 'suppress the load progress')
      .action(async (f: { input?: string; quiet?: boolean }) => {
        let src: Readable;
        if (f.input === undefined || f.input === '-') {
          if (process.stdin.isTTY)
            throw new BerthError(
              'INVALID_ARGUMENT',
              'requested load from stdin, but stdin is empty',
              { field: 'input' },
            );
          src = process.stdin;
        } else src = await openInput(f.input, 'input');
        const messages = await client().loadImage(src);
        await displayProgress(messages, progressOut, f.quiet ? { show: (m) => !m.id } : {});
      });
  load(program.command('load'));
  load(image.command('load'));

  const save = (c: Command) =>
    c
      .description('Save images to a tar archive (stdout by default)')
      .option('-o, --output <file>', 'write to a file instead of stdout')
      .argument('<image...>')
      .action(async (names: string[], f: { output?: string }) => {
        const dest = saveDestination(f.output, process.stdout.isTTY === true);
        const res = await client().saveImages(names);
        if (dest === 'stdout') await copyToStdout(res);
        else await writeFileAtomically(dest.file, res);
      });
  save(program.command('save'));
  save(image.command('save'));

  const importCmd = (c: Command) =>
    c
      .description('Import a root filesystem tarball as an image')
      .argument('<file>', 'tar file, or - for stdin')
      .argument('<name[:tag]>')
      .action(async (file: string, ref: string) => {
        const stream = file === '-' ? process.stdin : await openInput(file, 'file');
        const img = await client().importImage(stream, ref);
        out(`${String(img['Id'])}\n`);
      });
  importCmd(program.command('import'));
  importCmd(image.command('import'));

  // ---- images / inspect / history ----

  const ls = (c: Command) =>
    c
      .description('List images')
      .option('-a, --all', 'show all images (default hides intermediate images)')
      .option('-q, --quiet', 'only ids')
      .option('--digests', 'show digests')
      .option('--no-trunc', 'do not truncate output')
      .option('--format <format>', 'table, json, or a Go template')
      .argument('[repository[:tag]]')
      .action(
        async (
          ref: string | undefined,
          f: { all?: boolean; quiet?: boolean; digests?: boolean; trunc: boolean; format?: string },
        ) => {
          const list = (await client().listImages({ all: !!f.all, digests: !!f.digests })).filter(
            (i) => ref === undefined || matchesReference(i, ref),
          );
          if (f.quiet) {
            out(list.map((i) => `${f.trunc ? shortId(i.Id) : i.Id}\n`).join(''));
            return;
          }
          const now = Date.now();
          const rows = list.map((i) => imageRow(i, f.trunc, now));
          out(
            formatItems(rows, f.format ?? '', () =>
              table([
                [
                  'REPOSITORY',
                  'TAG',
                  ...(f.digests ? ['DIGEST'] : []),
                  'IMAGE ID',
                  'CREATED',
                  'SIZE',
                ],
                ...rows.map((r) => [
                  r.Repository,
                  r.Tag,
                  ...(f.digests ? [r.Digest] : []),
                  r.ID,
                  r.CreatedSince,
                  r.Size,
                ]),
              ]),
            ),
          );
        },
      );
  ls(program.command('images'));
  ls(image.command('ls')).alias('list');

  image
    .command('inspect')
    .description('Show images in detail')
    .option('-f, --format <template>', "Go template, as docker's")
    .argument('<image...>')
    .action((names: string[], f: { format?: string }) =>
      inspectEach(names, (n) => client().inspectImage(n), f.format, out, exitWith),
    );

  const history = (c: Command) =>
    c
      .description('Show the history of an image')
      .option('--no-trunc', 'do not truncate output')
      .option('-q, --quiet', 'only ids')
      .option('-H, --human [bool]', 'sizes and dates in human readable form', true)
      .option('--format <format>', 'table, json, or a Go template')
      .argument('[image]')
      .usage('[options] <image>')
      .action(
        async (
          arg: string | undefined,
          f: { trunc: boolean; quiet?: boolean; human: string | boolean; format?: string },
        ) => {
          const { image: name, human } = historyArgs(arg, f.human);
          if (name === undefined) c.error("error: missing required argument 'image'");
          const list = await client().imageHistory(name);
          const now = Date.now();
          const rows = list.map((h) => historyRow(h, { trunc: f.trunc, human }, now));
          if (f.quiet) {
            out(rows.map((r) => `${r.ID}\n`).join(''));
            return;
          }
          out(
            formatItems(rows, f.format ?? '', () =>
              table([
                ['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'],
                ...rows.map((r) => [r.ID, r.CreatedSince, r.CreatedBy, r.Size, r.Comment]),
              ]),
            ),
          );
        },
      );
  history(program.command('history'));
  history(image.command('history'));

  // ---- rmi / tag / prune ----

  const rmi = (c: Command) =>
    c
      .description('Remove images (untag them; delete an image when no tag is left)')
      .option('-f, --force', 'remove every tag of an image named by id, and one containers use')
      .argument('<image...>')
      .action(async (names: string[], f: { force?: boolean }) => {
        await forEach(names, async (n) => {
          const items = await client().removeImage(n, !!f.force);
          out(items.map((d) => deleteLine(d, false)).join(''));
        });
      });
  rmi(program.command('rmi'));
  rmi(image.command('rm')).alias('remove');

  const tag = (c: Command) =>
    c
      .description('Give an image another name: TARGET_IMAGE refers to SOURCE_IMAGE')
      .argument('<source_image[:tag]>')
      .argument('<target_image[:tag]>')
      .action(async (source: string, target: string) => {
        const t = parseTagTarget(target);
        await client().tagImage(source, t.repo, t.tag);
      });
  tag(program.command('tag'));
  tag(image.command('tag'));

  image
    .command('prune')
    .description('Remove unused images')
    .option('-a, --all', 'remove all images no container uses, not just dangling ones')
    .option('-f, --force', 'do not ask for confirmation')
    .action(async (f: { all?: boolean; force?: boolean }) => {
      if (!f.force) {
        out(
          `WARNING! This will remove all ${
            f.all ? 'images without at least one container associated to them' : 'dangling images'
          }.\nAre you sure you want to continue? [y/N] `,
        );
        const answer = await readLine();
        process.stdin.destroy();
        if (!/^y(es)?$/i.test(answer.trim())) return;
      }
      const r = await client().pruneImages(!!f.all);
      const deleted = r.ImagesDeleted ?? [];
      if (deleted.length > 0)
        out(`Deleted Images:\n${deleted.map((d) => deleteLine(d, true)).join('')}\n`);
      out(`Total reclaimed space: ${humanSize(r.SpaceReclaimed)}\n`);
    });

  // ---- login / logout ----

  program
    .command('login')
    .description('Log in to a registry (Docker Hub by default); berthd keeps the credentials')
    .option('-u, --username <username>', 'username')
    .option('-p, --password <password>', 'password (insecure: prefer --password-stdin)')
    .option('--password-stdin', 'take the password from stdin')
    .argument('[server]')
    .action(
      async (
        server: string | undefined,
        f: { username?: string; password?: string; passwordStdin?: boolean },
      ) => {
        let { username, password } = f;
        if (password !== undefined)
          process.stderr.write(
            'WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n',
          );
        if (f.passwordStdin) {
          if (password !== undefined)
            throw new BerthError(
              'INVALID_ARGUMENT',
              '--password and --password-stdin are mutually exclusive',
              { field: 'password' },
            );
          if (username === undefined)
            throw new BerthError(
              'INVALID_ARGUMENT',
              'Must provide --username with --password-stdin',
              { field: 'username' },
            );
          password = (await readAllStdin()).replace(/\n$/, '').replace(/\r$/, '');
        }
        if (username === undefined || password === undefined) {
          if (!process.stdin.isTTY)
            throw new BerthError(
              'INVALID_ARGUMENT',
              'Cannot perform an interactive login from a non TTY device',
              { field: 'username' },
            );
          try {
            if (username === undefined) {
              out('Username: ');
              username = await readLine();
            }
            if (password === undefined) {
              out('Password: ');
              password = await readSecret();
            }
          } finally {
            process.stdin.destroy();
          }
        }
        username = username.trim();
        if (username === '')
          throw new BerthError('INVALID_ARGUMENT', 'Username is required', { field: 'username' });
        if (password === '')
          throw new BerthError('INVALID_ARGUMENT', 'Password is required', { field: 'password' });
        const r = await client().login({
          ...(server === undefined ? {} : { serveraddress: server }),
          username,
          password,
        });
        out(`${r.Status || 'Login Succeeded'}\n`);
      },
    );

  program
    .command('logout')
    .description('Log out from a registry (Docker Hub by default)')
    .argument('[server]')
    .action(async (server: string | undefined) => {
      try {
        const r = await client().logout(server);
        out(`${r.Status}\n`);
      } catch (e) {
        if (e instanceof BerthError && (e.class === 'NotFound' || e.details?.['status'] === 404)) {
          out(`Not logged in to ${server ?? DEFAULT_REGISTRY}\n`);
          return;
        }
        throw e;
      }
    });
}
