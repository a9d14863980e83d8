// Image archives, as `docker save` writes them and `docker load` reads them.
//
// Reading takes a tar (plain or gzip) as a stream and never lands on the filesystem by the
// archive's own names: each file's bytes go straight into the content store, hashed on the
// way, and only the small JSON files that say what the archive holds are kept in memory.
// Names the archive uses for each other (manifest.json's paths, legacy symlinks between
// layer directories) are resolved in a model of the archive's entries, never by the
// kernel. Two layouts are understood:
//   - Docker's `save` format: manifest.json lists [{Config, RepoTags, Layers}] by path,
//     legacy (`<id>.json`, `<id>/layer.tar`, repeated layers as symlinks) or Docker 25+
//     (`blobs/sha256/<hex>`, written together with an OCI index.json);
//   - the OCI image layout: oci-layout, index.json and blobs/sha256/<hex>, nested indexes
//     included (one manifest picked for this host's platform).
//
// Writing produces an archive that is both: blobs/sha256/<hex> for every blob, an OCI
// index.json and oci-layout, Docker's manifest.json and the legacy `repositories` file, so
// old and new `docker load`, skopeo's docker-archive: and oci-archive: all read it.
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';
import { BerthError, errorMessage } from '../util/errors.ts';
import type { ContentStore } from './content-store.ts';
import { formatPlatform, hostPlatform, selectPlatform, type Platform } from './platform.ts';
import {
  familiarReference,
  formatReference,
  isDigest,
  parseDigest,
  parseReference,
  type Reference,
} from './reference.ts';
import { LAYER_TYPES, MEDIA_TYPES, type OciImageConfig } from './registry.ts';

export interface ArchiveLayer {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
}

export interface ArchiveImage {
  // The config blob, now in the store.
  readonly configDigest: string;
  // The manifest blob, now in the store, when the archive had one (OCI layout). For a
  // Docker-format archive without one, undefined (the caller makes one).
  readonly manifest?: { readonly digest: string; readonly mediaType: string };
  // Blobs now in the store, bottom first.
  readonly layers: readonly ArchiveLayer[];
  // As written in the archive, e.g. "busybox:latest"; may be empty.
  readonly repoTags: readonly string[];
}

export interface SaveImage {
  readonly configDigest: string;
  readonly manifestDigest: string;
  readonly manifestMediaType: string;
  // Blobs in the store.
  readonly layers: readonly ArchiveLayer[];
  // Full or familiar "repo:tag" names.
  readonly repoTags: readonly string[];
}

// --- limits ---------------------------------------------------------------------------

// Entries in one archive: a legacy archive has about four per layer.
const MAX_ENTRIES = 100_000;
// manifest.json, index.json, oci-layout, repositories: held in memory.
const MAX_JSON_BYTES = 16 << 20;
// Manifests and indexes (the distribution project's limit) and configs (a long history
// makes them big), read back from the store to be parsed.
const MAX_MANIFEST_BYTES = 4 << 20;
const MAX_CONFIG_BYTES = 64 << 20;
// One file in the archive, and a size a descriptor may claim.
const MAX_BLOB_BYTES = 2 ** 40;
const MAX_IMAGES = 10_000;
const MAX_LAYERS = 1_000;
const MAX_TAGS = 1_000;
const MAX_INDEX_DEPTH = 8;
const MAX_LINK_HOPS = 40;

const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';

const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
const CONFIG_TYPES = new Set<string>([MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]);

const DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';
const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const OCI_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';

// The small files that describe the archive, kept in memory.
const METADATA = new Set(['manifest.json', 'index.json', 'oci-layout', 'repositories']);
// Legacy per-layer metadata berth has no use for (the v1 layer json and its VERSION):
// read and dropped, within the same bound.
const IGNORED = /^(?:VERSION|[^/]+\/(?:json|VERSION))$/;
const BLOB_PATH = /^blobs\/([^/]+)\/([^/]+)$/;

function bad(message: string): BerthError {
  return new BerthError('IMAGE_INVALID', `Image archive: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (e) {
    throw bad(`${what} is not valid JSON (${errorMessage(e)})`);
  }
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_BLOB_BYTES;
}

function sha256Hex(digest: string, what: string): string {
  let d;
  try {
    d = parseDigest(digest);
  } catch {
    throw bad(`${what}: "${digest}" is not a digest`);
  }
  if (d.algorithm !== 'sha256') {
    throw bad(`${what}: digest ${digest} is not sha256, the only algorithm berth stores`);
  }
  return d.hex;
}

// A layer blob's type from its first bytes, for Docker-format layers no manifest describes.
function sniffLayerType(head: Buffer): string {
  if (head[0] === 0x1f && head[1] === 0x8b) return DOCKER_LAYER_GZIP;
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return OCI_LAYER_ZSTD;
  return DOCKER_LAYER;
}

// --- reading --------------------------------------------------------------------------

interface ArchiveFile {
  readonly digest: string;
  readonly size: number;
  // The first bytes, to tell a gzip layer from a plain one without reading it again.
  readonly head: Buffer;
}

interface Link {
  readonly target: string;
  // A hard link names its target from the archive's root, a symlink from its directory.
  readonly hard: boolean;
}

interface Desc {
  readonly mediaType: string | undefined;
  readonly digest: string;
  readonly size: number;
  readonly platform: Platform | undefined;
  readonly annotations: Readonly<Record<string, string>>;
}

interface FoundImage {
  readonly manifest: { readonly digest: string; readonly mediaType: string };
  readonly configDigest: string;
  readonly layers: readonly ArchiveLayer[];
}

type Parsed =
  | { readonly kind: 'index'; readonly manifests: readonly Desc[] }
  | { readonly kind: 'image'; readonly image: FoundImage }
  | { readonly kind: 'other' };

function toBuffer(v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (typeof v === 'string') return Buffer.from(v);
  throw new TypeError('Image archive input: chunks must be bytes');
}

// Rejects when `signal` aborts, else settles as `p` does.
function until<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e as Error);
      },
    );
  });
}

function descriptor(raw: unknown, what: string): Desc {
  if (!isObject(raw)) throw bad(`${what} is not a descriptor object`);
  const { mediaType, digest, size, platform, annotations } = raw;
  if (mediaType !== undefined && typeof mediaType !== 'string') {
    throw bad(`${what}: mediaType is not a string`);
  }
  if (typeof digest !== 'string' || !isDigest(digest)) {
    throw bad(`${what}: "${String(digest)}" is not a digest`);
  }
  if (!isSize(size)) throw bad(`${what}: size ${JSON.stringify(size)} is not a plausible size`);
  let plat: Platform | undefined;
  if (isObject(platform)) {
    const { os, architecture, variant } = platform;
    if (typeof os === 'string' && typeof architecture === 'string') {
      plat =
        typeof variant === 'string' && variant !== ''
          ? { os, architecture, variant }
          : { os, architecture };
    }
  }
  const notes: Record<string, string> = {};
  if (isObject(annotations)) {
    for (const [k, v] of Object.entries(annotations)) if (typeof v === 'string') notes[k] = v;
  }
  return { mediaType, digest, size, platform: plat, annotations: notes };
}

// A name the annotations give an image, in the form the caller tags with: containerd's
// full name, else the OCI ref name when it is a name rather than a bare tag ("latest").
function annotationTag(d: Desc): string | undefined {
  const candidates = [d.annotations[ANNOTATION_IMAGE_NAME], d.annotations[ANNOTATION_REF_NAME]];
  for (const [i, s] of candidates.entries()) {
    if (s === undefined) continue;
    if (i === 1 && !/[:/]/.test(s)) continue;
    try {
      const r = parseReference(s);
      if (r.digest === undefined && r.tag !== undefined) return s;
    } catch {
      // not a name: the image stays untagged by this annotation
    }
  }
  return undefined;
}

function checkRepoTag(s: unknown, what: string): string {
  if (typeof s !== 'string') throw bad(`${what} is not a string`);
  let r: Reference;
  try {
    r = parseReference(s);
  } catch (e) {
    throw bad(`${what}: ${errorMessage(e)}`);
  }
  if (r.digest !== undefined) throw bad(`${what}: "${s}" has a digest, not a tag`);
  return s;
}

class ArchiveReader {
  private readonly store: ContentStore;
  private readonly signal: AbortSignal | undefined;
  // Blobs this call put into the store that were not there before.
  private readonly added = new Set<string>();
  private readonly files = new Map<string, ArchiveFile>();
  private readonly links = new Map<string, Link>();
  private readonly meta = new Map<string, Buffer>();
  private entries = 0;
  // Aborted on the first failure (the caller's signal included).
  private readonly stop = new AbortController();

  constructor(store: ContentStore, signal: AbortSignal | undefined) {
    this.store = store;
    this.signal = signal;
  }

  async read(input: Readable): Promise<ArchiveImage[]> {
    this.signal?.throwIfAborted();
    try {
      await this.consume(input);
      this.signal?.throwIfAborted();
      const images = await this.build();
      this.signal?.throwIfAborted();
      // What this call stored that no image uses (other platforms, indexes, stray files).
      const keep = new Set<string>();
      for (const i of images) {
        keep.add(i.configDigest);
        if (i.manifest) keep.add(i.manifest.digest);
        for (const l of i.layers) keep.add(l.digest);
      }
      for (const d of this.added) if (!keep.has(d)) await this.discard(d);
      return images;
    } catch (e) {
      for (const d of this.added) await this.discard(d).catch(() => undefined);
      throw e;
    }
  }

  // Only the blob: ContentStore.remove also drops a partial download of the same digest,
  // which may be a concurrent pull's.
  private async discard(digest: string): Promise<void> {
    await rm(this.store.path(digest), { force: true });
  }

  // The tar stream, gunzipped when it starts with gzip's magic bytes. The input is read
  // with an iterator that does not destroy it when reading stops: it belongs to the caller
  // (an HTTP request that still needs its error response, say).
  private async *tarChunks(input: Readable, stop: AbortSignal): AsyncGenerator<Buffer> {
    const it = input.iterator({ destroyOnReturn: false });
    let ended = false;
    try {
      let head = Buffer.alloc(0);
      while (head.length < 10) {
        const r = await until(it.next(), stop);
        if (r.done === true) {
          ended = true;
          break;
        }
        head = Buffer.concat([head, toBuffer(r.value)]);
      }
      const rest = async function* (): AsyncGenerator<Buffer> {
        if (head.length > 0) yield head;
        while (!ended) {
          const r = await until(it.next(), stop);
          if (r.done === true) return;
          yield toBuffer(r.value);
        }
      };
      if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
        throw bad('xz-compressed archives are not supported (decompress it, or use gzip)');
      }
      // "BZh", the block size, and the first block's magic (the digits of pi).
      if (/^BZh[1-9]1AY&SY/.test(head.subarray(0, 10).toString('latin1'))) {
        throw bad('bzip2-compressed archives are not supported (decompress it, or use gzip)');
      }
      if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) {
        throw bad('zstd-compressed archives are not supported (decompress it, or use gzip)');
      }
      if (head[0] !== 0x1f || head[1] !== 0x8b) {
        yield* rest();
        return;
      }
      // node-tar could gunzip too, but its decompressor writes a whole input chunk's output
      // into the entry at once (up to 1000 times the chunk); a zlib stream keeps to its
      // buffer size.
      const gz = createGunzip();
      const feeding = pipeline(rest(), gz);
      feeding.catch(() => undefined);
      try {
        let first = true;
        for await (const c of gz as AsyncIterable<Buffer>) {
          if (first && c[0] === 0x1f && c[1] === 0x8b) {
            throw bad('the gzip stream holds gzip data again, not a tar');
          }
          first = false;
          yield c;
        }
        await feeding;
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (typeof code === 'string' && code.startsWith('Z_')) {
          throw bad(`the gzip stream is corrupt (${errorMessage(e)})`);
        }
        throw e;
      } finally {
        gz.destroy();
      }
    } finally {
      it.return?.().catch(() => undefined);
    }
  }

  // Parses the tar, one entry at a time: an entry's bytes are in the store (or verified
  // there) before the next entry is looked at, and node-tar's flow control holds the input
  // back meanwhile, so at most a chunk or two is ever in memory.
  private async consume(input: Readable): Promise<void> {
    // Not gzip (done above), nor the other formats node-tar would guess from magic bytes.
    const parser = new tar.Parser({ strict: true, brotli: false, zstd: false });
    const stop = this.stop;
    let failure: { error: unknown } | undefined;
    const fail = (error: unknown): void => {
      if (failure !== undefined) return;
      failure = { error };
      // Whoever waits for input or for an entry's bytes gets an error instead.
      stop.abort();
    };
    const onAbort = (): void => fail(this.signal?.reason);
    this.signal?.addEventListener('abort', onAbort, { once: true });
    let chain = Promise.resolve();
    parser.on('entry', (e: tar.ReadEntry) => {
      chain = chain.then(async () => {
        if (failure !== undefined) return;
        try {
          await this.entry(e);
        } catch (err) {
          fail(err);
        }
      });
    });
    parser.on('error', (err: unknown) =>
      fail(bad(`not a valid tar stream (${errorMessage(err)})`)),
    );
    const ended = new Promise<void>((resolve) => parser.once('end', () => resolve()));
    // The end-of-archive marker (two zero blocks); after it, anything may follow.
    let sawEof = false;
    parser.once('eof', () => (sawEof = true));
    let total = 0;
    try {
      for await (const chunk of this.tarChunks(input, stop.signal)) {
        if (failure !== undefined) break;
        total += chunk.length;
        if (!parser.write(chunk)) await once(parser, 'drain', { signal: stop.signal });
      }
      if (failure === undefined) {
        parser.end();
        await until(ended, stop.signal);
        // node-tar reports a body cut short, but drops a partial header silently.
        if (!sawEof && total % 512 !== 0) {
          fail(bad('the tar stream ends in the middle of a header (cut short?)'));
        }
      }
    } catch (e) {
      fail(e);
    } finally {
      this.signal?.removeEventListener('abort', onAbort);
    }
    await chain;
    if (failure !== undefined) throw failure.error;
  }

  // An entry's bytes, until the read stops: node-tar's entry streams never end once the
  // parser is no longer fed.
  private async *body(e: tar.ReadEntry): AsyncGenerator<Buffer> {
    const it = (e as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      const r = await until(it.next(), this.stop.signal);
      if (r.done === true) return;
      yield r.value;
    }
  }

  // A whole entry in memory, within the bound for metadata files.
  private async readAll(e: tar.ReadEntry, name: string): Promise<Buffer> {
    if (e.size > MAX_JSON_BYTES) {
      throw bad(`${name} is ${e.size} bytes, over the ${MAX_JSON_BYTES}-byte limit`);
    }
    const parts: Buffer[] = [];
    for await (const c of this.body(e)) parts.push(c);
    return Buffer.concat(parts);
  }

  private async entry(e: tar.ReadEntry): Promise<void> {
    if (++this.entries > MAX_ENTRIES) throw bad(`more than ${MAX_ENTRIES} entries`);
    if (e.type === 'Directory' || e.type === 'GNUDumpDir') {
      e.resume();
      return;
    }
    const name = posix.normalize(e.path.replace(/\/+$/, ''));
    if (name === '.' || name === '..' || name.startsWith('../') || name.startsWith('/')) {
      throw bad(`entry "${e.path}" is named outside the archive`);
    }
    switch (e.type) {
      case 'SymbolicLink':
      case 'Link':
        this.files.delete(name);
        this.meta.delete(name);
        this.links.set(name, { target: e.linkpath ?? '', hard: e.type === 'Link' });
        e.resume();
        return;
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        break;
      default:
        throw bad(`entry ${name} is a ${e.type}, which has no place in an image archive`);
    }
    if (e.size > MAX_BLOB_BYTES) throw bad(`entry ${name} claims an absurd size (${e.size} bytes)`);
    this.links.delete(name);
    if (METADATA.has(name)) {
      this.meta.set(name, await this.readAll(e, name));
      return;
    }
    if (IGNORED.test(name)) {
      await this.readAll(e, name);
      return;
    }
    const m = BLOB_PATH.exec(name);
    let expectHex: string | undefined;
    if (m !== null && m[1] === 'sha256') {
      expectHex = m[2] ?? '';
      if (!/^[0-9a-f]{64}$/.test(expectHex)) {
        throw bad(`entry ${name}: "${expectHex}" is not a sha256 digest`);
      }
    } else if (m !== null) {
      // Another algorithm's blob: berth stores sha256 only, and a descriptor naming one
      // is refused when it is used.
      for await (const _ of this.body(e)) void _;
      return;
    }
    this.files.set(name, await this.storeEntry(e, name, expectHex));
  }

  // Streams an entry into the store. A blob named by its digest is checked against the
  // name; one already in the store is only hashed. Whether the store had it is asked just
  // before ContentStore.putStream gives it its name, so `added` holds what this call made.
  private async storeEntry(
    e: tar.ReadEntry,
    name: string,
    expectHex: string | undefined,
  ): Promise<ArchiveFile> {
    const store = this.store;
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    let digest = '';
    let isNew = false;
    const body = this.body(e);
    const hashed = async function* (): AsyncGenerator<Buffer> {
      for await (const c of body) {
        hash.update(c);
        size += c.length;
        if (head.length < 8) head = Buffer.concat([head, c.subarray(0, 8 - head.length)]);
        yield c;
      }
      const hex = hash.digest('hex');
      if (expectHex !== undefined && hex !== expectHex) {
        throw bad(`entry ${name} does not match its name: its content is sha256:${hex}`);
      }
      digest = `sha256:${hex}`;
      isNew = !(await store.has(digest));
    };
    if (expectHex !== undefined && (await store.has(`sha256:${expectHex}`))) {
      for await (const _ of hashed()) void _;
    } else {
      await store.putStream(hashed());
    }
    if (isNew) this.added.add(digest);
    return { digest, size, head };
  }

  // --- what the archive holds ---

  // A path as manifest.json names it, through the archive's links, to the file it means.
  private lookup(path: string, what: string): ArchiveFile {
    const real = this.resolve(path, what);
    const f = this.files.get(real);
    if (f === undefined) {
      throw bad(
        `${what} names ${path}${real === path ? '' : ` (${real})`}, which is not a file in the archive`,
      );
    }
    return f;
  }

  private resolve(path: string, what: string): string {
    const parts = path.split('/');
    const out: string[] = [];
    let hops = 0;
    for (let p = parts.shift(); p !== undefined; p = parts.shift()) {
      if (p === '' || p === '.') continue;
      if (p === '..') {
        if (out.length === 0) {
          throw bad(
            `${what}: ${path} leads outside the archive${hops > 0 ? ' through a link' : ''}`,
          );
        }
        out.pop();
        continue;
      }
      out.push(p);
      const at = out.join('/');
      const link = this.links.get(at);
      if (link === undefined) continue;
      if (++hops > MAX_LINK_HOPS) throw bad(`${what}: too many links resolving ${path}`);
      if (link.target.startsWith('/')) {
        throw bad(`${what}: ${at} is a link to ${link.target}, outside the archive`);
      }
      out.pop();
      if (link.hard) out.length = 0;
      parts.unshift(...link.target.split('/'));
    }
    return out.join('/');
  }

  private hasBlob(digest: string): boolean {
    const d = parseDigest(digest);
    if (d.algorithm !== 'sha256') return false;
    try {
      return this.files.has(this.resolve(`blobs/sha256/${d.hex}`, digest));
    } catch {
      return false;
    }
  }

  // The blob a descriptor names, checked against the descriptor's size.
  private blob(digest: string, size: number | undefined, what: string): ArchiveFile {
    const hex = sha256Hex(digest, what);
    const path = `blobs/sha256/${hex}`;
    const f = this.files.get(this.resolve(path, what));
    if (f === undefined) throw bad(`${what}: blob ${digest} is not in the archive`);
    // Only possible through a link: the entry named by the digest was verified.
    if (f.digest !== digest) throw bad(`${what}: ${path} holds ${f.digest}, not ${digest}`);
    if (size !== undefined && f.size !== size) {
      throw bad(`${what}: blob ${digest} is ${f.size} bytes, not the ${size} its descriptor says`);
    }
    return f;
  }

  private async readJsonBlob(f: ArchiveFile, limit: number, what: string): Promise<unknown> {
    if (f.size > limit) throw bad(`${what} is ${f.size} bytes, over the ${limit}-byte limit`);
    return parseJson(await this.store.readBytes(f.digest), what);
  }

  private async config(f: ArchiveFile, layers: number, what: string): Promise<OciImageConfig> {
    const raw = await this.readJsonBlob(f, MAX_CONFIG_BYTES, `${what} (config ${f.digest})`);
    const rootfs = isObject(raw) ? raw['rootfs'] : undefined;
    if (!isObject(raw) || !isObject(rootfs)) {
      throw bad(`${what}: config ${f.digest} is not an image config (no rootfs)`);
    }
    const ids = rootfs['diff_ids'];
    if (rootfs['type'] !== 'layers' || !Array.isArray(ids)) {
      throw bad(`${what}: config ${f.digest} has no rootfs of type "layers" with diff_ids`);
    }
    if (!ids.every((d) => typeof d === 'string' && isDigest(d))) {
      throw bad(`${what}: config ${f.digest} has a diff_id that is not a digest`);
    }
    if (ids.length !== layers) {
      throw bad(`${what}: config ${f.digest} has ${ids.length} diff_ids for ${layers} layers`);
    }
    return raw as unknown as OciImageConfig;
  }

  // An index or manifest blob a descriptor names, parsed; an image manifest with its
  // config and layers checked.
  private async parse(d: Desc, what: string): Promise<Parsed> {
    const f = this.blob(d.digest, d.size, what);
    const raw = await this.readJsonBlob(f, MAX_MANIFEST_BYTES, `${what} (${d.digest})`);
    if (!isObject(raw)) throw bad(`${what}: ${d.digest} is not a JSON object`);
    const own = raw['mediaType'];
    if (own !== undefined && typeof own !== 'string') {
      throw bad(`${what}: ${d.digest} has a mediaType that is not a string`);
    }
    if (d.mediaType !== undefined && own !== undefined && own !== d.mediaType) {
      throw bad(`${what}: ${d.digest} is a ${own}, but its descriptor says ${d.mediaType}`);
    }
    const mediaType = d.mediaType ?? own;
    const isIndex =
      mediaType !== undefined ? INDEX_TYPES.has(mediaType) : Array.isArray(raw['manifests']);
    const isManifest =
      mediaType !== undefined
        ? MANIFEST_TYPES.has(mediaType)
        : isObject(raw['config']) && Array.isArray(raw['layers']);
    if (isIndex) {
      const list = raw['manifests'];
      if (!Array.isArray(list)) throw bad(`${what}: index ${d.digest} has no manifests list`);
      if (list.length > MAX_IMAGES) throw bad(`${what}: index ${d.digest} is too long`);
      return {
        kind: 'index',
        manifests: list.map((m, i) => descriptor(m, `${what}: index ${d.digest} entry ${i}`)),
      };
    }
    if (!isManifest) return { kind: 'other' };
    const where = `${what}: manifest ${d.digest}`;
    if (raw['schemaVersion'] !== 2) throw bad(`${where} is not schema version 2`);
    const cfg = descriptor(raw['config'], `${where} config`);
    if (cfg.mediaType === undefined || !CONFIG_TYPES.has(cfg.mediaType)) {
      // An artifact (a signature, a chart, an attestation): not an image.
      return { kind: 'other' };
    }
    const rawLayers = raw['layers'];
    if (!Array.isArray(rawLayers)) throw bad(`${where} has no layers list`);
    if (rawLayers.length > MAX_LAYERS) throw bad(`${where} has more than ${MAX_LAYERS} layers`);
    const layers = rawLayers.map((l, i): ArchiveLayer => {
      const ld = descriptor(l, `${where} layer ${i}`);
      if (ld.mediaType === undefined || !LAYER_TYPES.has(ld.mediaType)) {
        throw bad(`${where} layer ${i} has media type ${ld.mediaType}, which is not a layer`);
      }
      this.blob(ld.digest, ld.size, `${where} layer ${i}`);
      return { digest: ld.digest, size: ld.size, mediaType: ld.mediaType };
    });
    const cf = this.blob(cfg.digest, cfg.size, `${where} config`);
    await this.config(cf, layers.length, where);
    return {
      kind: 'image',
      image: {
        manifest: { digest: d.digest, mediaType: mediaType ?? MEDIA_TYPES.ociManifest },
        configDigest: cf.digest,
        layers,
      },
    };
  }

  // The image a descriptor leads to: through indexes, the manifest for this host's
  // platform among those the archive holds. Undefined for what is not an image.
  private async image(d: Desc, what: string, depth = 0): Promise<FoundImage | undefined> {
    const t = d.mediaType;
    if (t !== undefined && !INDEX_TYPES.has(t) && !MANIFEST_TYPES.has(t)) return undefined;
    const p = await this.parse(d, what);
    if (p.kind === 'image') return p.image;
    if (p.kind === 'other') return undefined;
    if (depth >= MAX_INDEX_DEPTH) throw bad(`${what}: indexes nested too deep`);
    // Only what the archive holds: `docker save` of one platform keeps the whole index.
    const present = p.manifests.filter(
      (m) =>
        (m.mediaType === undefined ||
          INDEX_TYPES.has(m.mediaType) ||
          MANIFEST_TYPES.has(m.mediaType)) &&
        this.hasBlob(m.digest),
    );
    const host = hostPlatform();
    const chosen = selectPlatform(present, host) ?? (present.length === 1 ? present[0] : undefined);
    if (chosen === undefined) {
      const have = present.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown'));
      throw bad(
        present.length === 0
          ? `${what}: none of the manifests of index ${d.digest} is in the archive`
          : `${what}: index ${d.digest} has no manifest for ${formatPlatform(host)} (it has ${have.join(', ')})`,
      );
    }
    return this.image(chosen, `${what} → ${chosen.digest}`, depth + 1);
  }

  private indexJson(): Desc[] | undefined {
    const bytes = this.meta.get('index.json');
    if (bytes === undefined) return undefined;
    const raw = parseJson(bytes, 'index.json');
    if (!isObject(raw) || raw['schemaVersion'] !== 2 || !Array.isArray(raw['manifests'])) {
      throw bad('index.json is not an OCI image index (schemaVersion 2 with a manifests list)');
    }
    const list = raw['manifests'] as unknown[];
    if (list.length > MAX_IMAGES) throw bad(`index.json lists more than ${MAX_IMAGES} manifests`);
    return list.map((m, i) => descriptor(m, `index.json manifests[${i}]`));
  }

  private async build(): Promise<ArchiveImage[]> {
    const layout = this.meta.get('oci-layout');
    if (layout !== undefined) {
      const raw = parseJson(layout, 'oci-layout');
      if (!isObject(raw) || typeof raw['imageLayoutVersion'] !== 'string') {
        throw bad('oci-layout has no imageLayoutVersion');
      }
    }
    const index = this.indexJson();
    const manifestJson = this.meta.get('manifest.json');
    if (manifestJson !== undefined) return this.buildDocker(manifestJson, index);
    if (index !== undefined) return this.buildOci(index);
    throw bad('there is neither a manifest.json nor an index.json: this is not an image archive');
  }

  // Every image manifest index.json leads to that the archive holds, by config digest:
  // Docker 25+ writes one per manifest.json entry.
  private async indexImages(index: readonly Desc[]): Promise<Map<string, FoundImage[]>> {
    const found = new Map<string, FoundImage[]>();
    const seen = new Set<string>();
    const walk = async (list: readonly Desc[], what: string, depth: number): Promise<void> => {
      for (const [i, d] of list.entries()) {
        if (seen.has(d.digest) || !this.hasBlob(d.digest)) continue;
        seen.add(d.digest);
        const where = `${what}[${i}]`;
        const p = await this.parse(d, where);
        if (p.kind === 'image') {
          const l = found.get(p.image.configDigest) ?? [];
          l.push(p.image);
          found.set(p.image.configDigest, l);
        } else if (p.kind === 'index') {
          if (depth >= MAX_INDEX_DEPTH) throw bad(`${where}: indexes nested too deep`);
          await walk(p.manifests, `${where} → ${d.digest}`, depth + 1);
        }
      }
    };
    await walk(index, 'index.json manifests', 0);
    return found;
  }

  private async buildDocker(bytes: Buffer, index: Desc[] | undefined): Promise<ArchiveImage[]> {
    const raw = parseJson(bytes, 'manifest.json');
    if (!Array.isArray(raw)) throw bad('manifest.json is not a list of images');
    if (raw.length === 0) throw bad('manifest.json lists no images');
    if (raw.length > MAX_IMAGES) throw bad(`manifest.json lists more than ${MAX_IMAGES} images`);
    const fromIndex =
      index === undefined ? new Map<string, FoundImage[]>() : await this.indexImages(index);
    const images: ArchiveImage[] = [];
    for (const [i, item] of raw.entries()) {
      const what = `manifest.json entry ${i}`;
      if (!isObject(item)) throw bad(`${what} is not an object`);
      const { Config, Layers, RepoTags } = item;
      if (typeof Config !== 'string') throw bad(`${what} has no Config path`);
      if (!Array.isArray(Layers) || !Layers.every((l) => typeof l === 'string')) {
        throw bad(`${what}: Layers is not a list of paths`);
      }
      if (Layers.length > MAX_LAYERS) throw bad(`${what} has more than ${MAX_LAYERS} layers`);
      if (RepoTags !== undefined && RepoTags !== null && !Array.isArray(RepoTags)) {
        throw bad(`${what}: RepoTags is not a list`);
      }
      const tagList: unknown[] = Array.isArray(RepoTags) ? RepoTags : [];
      if (tagList.length > MAX_TAGS) throw bad(`${what} has more than ${MAX_TAGS} tags`);
      const repoTags = tagList.map((t, j) => checkRepoTag(t, `${what} RepoTags[${j}]`));
      const cfg = this.lookup(Config, `${what} Config`);
      const files = (Layers as string[]).map((p, j) => this.lookup(p, `${what} Layers[${j}]`));
      await this.config(cfg, files.length, what);
      const match = (fromIndex.get(cfg.digest) ?? []).find(
        (m) =>
          m.layers.length === files.length &&
          m.layers.every((l, j) => l.digest === files[j]?.digest),
      );
      images.push({
        configDigest: cfg.digest,
        ...(match ? { manifest: match.manifest } : {}),
        layers: match
          ? match.layers
          : files.map((f) => ({
              digest: f.digest,
              size: f.size,
              mediaType: sniffLayerType(f.head),
            })),
        repoTags,
      });
    }
    return images;
  }

  private async buildOci(index: readonly Desc[]): Promise<ArchiveImage[]> {
    // Entries of one name (or of none) that carry platforms are one image written flat for
    // several platforms: only the best for this host is loaded.
    const groups = new Map<string, Desc[]>();
    const single: Desc[] = [];
    for (const d of index) {
      if (d.platform === undefined) {
        single.push(d);
        continue;
      }
      const key = annotationTag(d) ?? '';
      groups.set(key, [...(groups.get(key) ?? []), d]);
    }
    const host = hostPlatform();
    const chosen = new Set<Desc>(single);
    for (const g of groups.values()) {
      const present = g.filter((d) => this.hasBlob(d.digest));
      const best = selectPlatform(present, host) ?? present[0] ?? g[0];
      if (best !== undefined) chosen.add(best);
    }
    const byManifest = new Map<string, { image: FoundImage; tags: string[] }>();
    for (const [i, d] of index.entries()) {
      if (!chosen.has(d)) continue;
      const image = await this.image(d, `index.json manifests[${i}]`);
      if (image === undefined) continue;
      const entry = byManifest.get(image.manifest.digest) ?? { image, tags: [] };
      byManifest.set(image.manifest.digest, entry);
      const tag = annotationTag(d);
      if (tag !== undefined && !entry.tags.includes(tag)) entry.tags.push(tag);
    }
    if (byManifest.size === 0) throw bad('index.json names no image');
    return [...byManifest.values()].map(({ image, tags }) => ({
      configDigest: image.configDigest,
      manifest: image.manifest,
      layers: image.layers,
      repoTags: tags,
    }));
  }
}

// Reads an image archive (`docker save`, Docker 25+, or an OCI layout in a tar; plain or
// gzip) into the store and says what images it holds. On failure every blob this call added
// is removed again and the promise rejects (IMAGE_INVALID for a bad archive). The input is
// not destroyed: what is left unread of it is the caller's.
export async function readImageArchive(
  input: Readable,
  store: ContentStore,
  opts: { signal?: AbortSignal } = {},
): Promise<ArchiveImage[]> {
  return new ArchiveReader(store, opts.signal).read(input);
}

// --- writing --------------------------------------------------------------------------

// Every entry's mtime, so that the same images give the same bytes.
const EPOCH = new Date(0);

interface Planned {
  readonly meta: readonly { readonly name: string; readonly bytes: Buffer }[];
  readonly blobs: ReadonlyMap<string, number>;
}

function tagOf(s: string, what: string): Reference & { readonly tag: string } {
  const r = parseReference(s, what);
  if (r.digest !== undefined || r.tag === undefined) {
    throw new BerthError('INVALID_ARGUMENT', `${what}: "${s}" is not a repo:tag name`);
  }
  return { ...r, tag: r.tag };
}

async function planArchive(store: ContentStore, images: readonly SaveImage[]): Promise<Planned> {
  const blobs = new Map<string, number>();
  const need = async (digest: string, declared: number | undefined, what: string) => {
    const size = await store.size(digest);
    if (size === undefined) {
      throw new BerthError('IMAGE_INVALID', `${what}: blob ${digest} is not in the content store`);
    }
    if (declared !== undefined && declared !== size) {
      throw new BerthError(
        'IMAGE_INVALID',
        `${what}: blob ${digest} is ${size} bytes in the content store, not ${declared}`,
      );
    }
    if (!blobs.has(digest)) blobs.set(digest, size);
    return size;
  };
  // One entry per manifest, however many times it was asked for.
  const merged = new Map<string, { image: SaveImage; tags: string[] }>();
  for (const image of images) {
    const m = merged.get(image.manifestDigest) ?? { image, tags: [] };
    merged.set(image.manifestDigest, m);
    for (const t of image.repoTags) if (!m.tags.includes(t)) m.tags.push(t);
  }
  const manifestJson: unknown[] = [];
  const indexEntries: unknown[] = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const { image, tags } of merged.values()) {
    const what = `Image ${tags[0] ?? image.configDigest}`;
    const configHex = parseDigest(image.configDigest).hex;
    await need(image.configDigest, undefined, `${what} config`);
    for (const [i, l] of image.layers.entries()) await need(l.digest, l.size, `${what} layer ${i}`);
    const manifestSize = await need(image.manifestDigest, undefined, `${what} manifest`);
    if (manifestSize > MAX_MANIFEST_BYTES) {
      throw new BerthError('IMAGE_INVALID', `${what}: manifest is ${manifestSize} bytes`);
    }
    // manifest.json and index.json must describe the same image, or docker and OCI readers
    // of the archive would load different things.
    let manifest: unknown;
    try {
      manifest = JSON.parse((await store.readBytes(image.manifestDigest)).toString('utf8'));
    } catch (e) {
      throw new BerthError('IMAGE_INVALID', `${what}: manifest is not JSON (${errorMessage(e)})`);
    }
    const mc = isObject(manifest) && isObject(manifest['config']) ? manifest['config'] : {};
    const ml = isObject(manifest) && Array.isArray(manifest['layers']) ? manifest['layers'] : [];
    if (
      mc['digest'] !== image.configDigest ||
      ml.length !== image.layers.length ||
      !ml.every((l, i) => isObject(l) && l['digest'] === image.layers[i]?.digest)
    ) {
      throw new BerthError(
        'IMAGE_INVALID',
        `${what}: manifest ${image.manifestDigest} does not describe its config and layers`,
      );
    }
    const refs = tags.map((t, i) => tagOf(t, `${what} tag ${i}`));
    manifestJson.push({
      Config: `blobs/sha256/${configHex}`,
      RepoTags: refs.length > 0 ? refs.map((r) => familiarReference(r)) : null,
      Layers: image.layers.map((l) => `blobs/sha256/${parseDigest(l.digest).hex}`),
    });
    const desc = {
      mediaType: image.manifestMediaType,
      digest: image.manifestDigest,
      size: manifestSize,
    };
    if (refs.length === 0) indexEntries.push(desc);
    for (const r of refs) {
      indexEntries.push({
        ...desc,
        annotations: { [ANNOTATION_IMAGE_NAME]: formatReference(r), [ANNOTATION_REF_NAME]: r.tag },
      });
      const repo = familiarReference({ ...r, tag: undefined });
      repositories[repo] = { ...repositories[repo], [r.tag]: configHex };
    }
  }
  const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
  const meta = [
    { name: 'oci-layout', bytes: json({ imageLayoutVersion: '1.0.0' }) },
    {
      name: 'index.json',
      bytes: json({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: indexEntries }),
    },
    { name: 'manifest.json', bytes: json(manifestJson) },
  ];
  if (Object.keys(repositories).length > 0) {
    meta.push({ name: 'repositories', bytes: json(repositories) });
  }
  return { meta, blobs };
}

// One entry's header. node-tar's Pack is not used to write the archive: it packs files
// from the filesystem under the names they have there, and takes other entries only as
// ReadEntry objects fed through its own Minipass flow control, outside stream.pipeline, so
// a failed or aborted output would leave the feeder waiting for a 'drain' that never
// comes. node-tar still encodes the headers (and a PAX header for a blob of 8 GiB or more,
// whose size the ustar field cannot hold); the blocks are written here, in a pipeline.
function header(path: string, size: number, type: 'File' | 'Directory'): Buffer {
  const h = new tar.Header({
    path,
    mode: type === 'Directory' ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size,
    mtime: EPOCH,
    type,
    uname: '',
    gname: '',
  });
  const needPax = h.encode();
  const block = h.block ?? Buffer.alloc(0);
  return needPax ? Buffer.concat([new tar.Pax({ path, size }).encode(), block]) : block;
}

function padding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

async function* archiveBlocks(store: ContentStore, plan: Planned): AsyncGenerator<Buffer> {
  for (const { name, bytes } of plan.meta) {
    yield header(name, bytes.length, 'File');
    yield bytes;
    yield padding(bytes.length);
  }
  yield header('blobs/', 0, 'Directory');
  yield header('blobs/sha256/', 0, 'Directory');
  for (const [digest, size] of plan.blobs) {
    yield header(`blobs/sha256/${parseDigest(digest).hex}`, size, 'File');
    let n = 0;
    for await (const c of store.open(digest) as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > size) break;
      yield c;
    }
    if (n !== size) {
      throw new BerthError('IMAGE_INVALID', `Blob ${digest} changed size while it was saved`);
    }
    yield padding(size);
  }
  // The end of the archive: two zero blocks.
  yield Buffer.alloc(1024);
}

// Writes the images as one archive and ends `out`. Blobs are streamed from the store.
// Everything is checked before the first byte is written (a missing blob, a manifest that
// does not match its image: IMAGE_INVALID; a bad tag: INVALID_ARGUMENT), and `out` is then
// left untouched; a failure while writing destroys `out`, so that no reader takes a
// cut-short archive for a whole one.
export async function writeImageArchive(
  out: Writable,
  store: ContentStore,
  images: readonly SaveImage[],
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  opts.signal?.throwIfAborted();
  const plan = await planArchive(store, images);
  opts.signal?.throwIfAborted();
  const blocks = archiveBlocks(store, plan);
  if (opts.signal === undefined) await pipeline(blocks, out);
  else await pipeline(blocks, out, { signal: opts.signal });
}
