// A large, realistic image for transfer scenarios (pull): gzip layers of real files of this
// host (shared libraries, /usr/share, binaries, headers), each a tar by GNU tar of a
// directory tree cut to a byte budget, written as an OCI image layout (blobs/sha256,
// index.json naming the image by org.opencontainers.image.ref.name, oci-layout) that
// skopeo can push. The layers are made a few at a time, tar → sha256 (the diff id) → gzip →
// sha256 (the digest) → file, nothing of them held in memory.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export interface LayerSpec {
  // A directory of the host, relative to / (usr/share).
  readonly root: string;
  // Bytes of file content to take from it, walking it in name order.
  readonly budget: number;
}

export interface LayoutLayer {
  readonly root: string;
  readonly digest: string;
  readonly diffId: string;
  // The gzip blob.
  readonly size: number;
  // The tar.
  readonly tarBytes: number;
  // Entries in the tar (directories, files, symlinks).
  readonly entries: number;
}

export interface LayoutImage {
  readonly dir: string;
  // The name in index.json (skopeo's oci:DIR:REF).
  readonly ref: string;
  readonly manifestDigest: string;
  readonly layers: readonly LayoutLayer[];
  // Sums over the layers.
  readonly tarBytes: number;
  readonly gzipBytes: number;
  // Set-up time, ms.
  readonly buildMs: number;
  // tar said a file changed while it read it (exit 1): the layer is still consistent.
  readonly warnings: readonly string[];
}

const CREATED = '2024-01-01T00:00:00Z';

// The host's architecture in OCI terms.
export function ociArch(): string {
  const m: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', s390x: 's390x' };
  return m[process.arch] ?? process.arch;
}

// Paths (relative to /) of the directories, files and symlinks under `root` in name order,
// files taken while they fit in the budget (a hard link to one taken costs nothing),
// directories only when something under them is taken; the root's ancestors first, as a
// real layer has them.
export async function pickFiles(
  root: string,
  budget: number,
): Promise<{ paths: string[]; bytes: number }> {
  const paths: string[] = [];
  let bytes = 0;
  // Hard links (dev:ino) already taken: tar stores later ones as link entries, no data.
  const inodes = new Set<string>();
  const full = () => bytes >= budget * 0.99;
  const walk = async (rel: string): Promise<boolean> => {
    let names: string[];
    try {
      names = (await readdir(`/${rel}`)).sort();
    } catch {
      return false;
    }
    const at = paths.length;
    paths.push(rel);
    let any = false;
    for (const n of names) {
      if (full()) break;
      const p = `${rel}/${n}`;
      const st = await lstat(`/${p}`).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) {
        if (await walk(p)) any = true;
      } else if (st.isFile()) {
        const ino = `${st.dev}:${st.ino}`;
        if (st.nlink > 1 && inodes.has(ino)) {
          paths.push(p);
          any = true;
        } else if (bytes + st.size <= budget) {
          paths.push(p);
          bytes += st.size;
          any = true;
          if (st.nlink > 1) inodes.add(ino);
        }
      } else if (st.isSymbolicLink()) {
        paths.push(p);
        any = true;
      }
    }
    if (!any) paths.splice(at);
    return any;
  };
  const clean = root.replace(/^\/+|\/+$/g, '');
  if (!(await walk(clean))) return { paths: [], bytes: 0 };
  const parts = clean.split('/');
  const ancestors = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
  return { paths: [...ancestors, ...paths], bytes };
}

// sha256 and byte count of what passes through.
class Digester extends Transform {
  private readonly h = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.h.update(chunk);
    this.bytes += chunk.length;
    this.push(chunk);
    cb();
  }
  digest(): string {
    return `sha256:${this.h.digest('hex')}`;
  }
}

async function makeLayer(
  dir: string,
  spec: LayerSpec,
  signal: AbortSignal,
): Promise<{ layer: LayoutLayer; warning?: string }> {
  const { paths } = await pickFiles(spec.root, spec.budget);
  if (paths.length === 0) throw new Error(`image layer: nothing to take under /${spec.root}`);
  const tmp = join(dir, 'tmp');
  const list = join(tmp, `${spec.root.replace(/\//g, '_')}.list`);
  await writeFile(list, paths.map((p) => `${p}\0`).join(''));
  const out = join(tmp, `${spec.root.replace(/\//g, '_')}.tar.gz`);
  const tar = spawn(
    'tar',
    ['-C', '/', '--no-recursion', '--null', '-T', list, '--format=gnu', '-cf', '-'],
    { stdio: ['ignore', 'pipe', 'pipe'], signal, killSignal: 'SIGKILL' },
  );
  let stderr = '';
  tar.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
  const exited = new Promise<number>((resolve, reject) => {
    tar.on('error', reject);
    tar.on('close', (code) => resolve(code ?? -1));
  });
  const plain = new Digester();
  const gz = new Digester();
  await pipeline(tar.stdout, plain, createGzip({ level: 6 }), gz, createWriteStream(out), {
    signal,
  });
  const code = await exited;
  // 1: a file changed while tar read it; what it wrote is still a whole tar.
  if (code !== 0 && code !== 1) throw new Error(`tar of /${spec.root} failed (${code}): ${stderr}`);
  const digest = gz.digest();
  await rename(out, join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)));
  await rm(list, { force: true });
  return {
    layer: {
      root: spec.root,
      digest,
      diffId: plain.digest(),
      size: gz.bytes,
      tarBytes: plain.bytes,
      entries: paths.length,
    },
    ...(code === 1 ? { warning: `tar of /${spec.root}: ${stderr.trim().slice(-300)}` } : {}),
  };
}

async function blob(dir: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(dir, 'blobs', 'sha256', hex), bytes);
  return { digest: `sha256:${hex}`, size: bytes.length };
}

// Writes the image into `dir` (made if missing): one gzip layer per spec, in that order.
export async function buildLayout(
  dir: string,
  ref: string,
  specs: readonly LayerSpec[],
  signal: AbortSignal,
): Promise<LayoutImage> {
  const t0 = performance.now();
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await mkdir(join(dir, 'tmp'), { recursive: true });
  // A layer per CPU at a time: gzip is the work.
  const width = Math.max(1, cpus().length);
  const made: { layer: LayoutLayer; warning?: string }[] = new Array(specs.length);
  let next = 0;
  const worker = async () => {
    while (next < specs.length) {
      const i = next++;
      const s = specs[i];
      if (s) made[i] = await makeLayer(dir, s, signal);
    }
  };
  const done = await Promise.allSettled(Array.from({ length: width }, worker));
  for (const d of done) if (d.status === 'rejected') throw d.reason;
  await rm(join(dir, 'tmp'), { recursive: true, force: true });
  const layers = made.map((m) => m.layer);
  const cfg = await blob(
    dir,
    Buffer.from(
      JSON.stringify({
        created: CREATED,
        architecture: ociArch(),
        os: 'linux',
        config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
        history: layers.map((l) => ({
          created: CREATED,
          created_by: `tar of /${l.root} (${(l.tarBytes / 1e6).toFixed(0)} MB)`,
        })),
      }),
    ),
  );
  const manifest = await blob(
    dir,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
        layers: layers.map((l) => ({
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          digest: l.digest,
          size: l.size,
        })),
      }),
    ),
  );
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': ref },
        },
      ],
    }),
  );
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return {
    dir,
    ref,
    manifestDigest: manifest.digest,
    layers,
    tarBytes: layers.reduce((a, l) => a + l.tarBytes, 0),
    gzipBytes: layers.reduce((a, l) => a + l.size, 0),
    buildMs: performance.now() - t0,
    warnings: made.flatMap((m) => (m.warning ? [m.warning] : [])),
  };
}
