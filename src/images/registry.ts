// A client for the OCI distribution API (Docker Registry HTTP API v2): resolves a
// reference to one image manifest for a platform, and streams blobs to files while
// hashing them, resuming a dropped transfer with a Range request; and pushes, blobs
// streamed from their source (or mounted from another repository) and then manifests.
//
// Built on node:http/https rather than fetch: per-registry TLS trust (a test CA, client
// certificates from a certs.d directory, or no verification for a registry marked
// insecure) needs an https.Agent, which fetch cannot take without the undici package; the
// body arrives as the registry sent it (fetch would undo a Content-Encoding, and the digest
// is of the bytes on the wire); and redirects are followed by hand, so credentials never
// travel to another origin such as a blob store.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, type Hash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { constants } from 'node:fs';
import { type FileHandle, open, readdir, readFile, unlink } from 'node:fs/promises';
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { rootCertificates } from 'node:tls';
import { BerthError, errorMessage, invalid, isBerthError } from '../util/errors.ts';
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  platformRank,
  selectPlatform,
  type Platform,
} from './platform.ts';
import {
  basicAuthorization,
  type Challenge,
  type Credentials,
  parseChallenges,
  parseTokenResponse,
  pickChallenge,
  pullScope,
  pushScope,
  type Token,
  TokenCache,
  tokenRequestUrl,
} from './registry-auth.ts';
import {
  familiarReference,
  parseDigest,
  parseReference,
  type Reference,
  registryHost,
} from './reference.ts';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
const CONFIG_TYPES = new Set<string>([MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig]);
export const LAYER_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
]);
const ACCEPT = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifestList,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerManifest,
].join(', ');

// The distribution project's own limit on a manifest; a config is small too, but may carry
// a long history.
const MAX_MANIFEST_BYTES = 4 << 20;
const MAX_CONFIG_BYTES = 64 << 20;
const MAX_REDIRECTS = 5;
// The tag grammar of reference.ts: a tag is a path segment of the manifest URL.
const TAG = /^[\w][\w.-]{0,127}$/;
// Writes are gathered to this size: fewer syscalls than one per socket read.
const WRITE_CHUNK = 1 << 20;

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly platform?: Platform;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface BlobDescriptor {
  readonly digest: string;
  readonly size: number;
  readonly mediaType?: string;
}

export interface ImageManifest {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface ImageIndex {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly manifests: readonly Descriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

// The image configuration as the OCI image spec and Docker's schema 2 define it; only the
// fields berth reads are typed, the rest stays as the registry sent it.
export interface OciImageConfig {
  readonly architecture?: string;
  readonly os?: string;
  readonly variant?: string;
  readonly created?: string;
  readonly author?: string;
  readonly config?: {
    readonly User?: string;
    readonly ExposedPorts?: Readonly<Record<string, unknown>>;
    readonly Env?: readonly string[];
    readonly Entrypoint?: readonly string[] | null;
    readonly Cmd?: readonly string[] | null;
    readonly Volumes?: Readonly<Record<string, unknown>>;
    readonly WorkingDir?: string;
    readonly Labels?: Readonly<Record<string, string>> | null;
    readonly StopSignal?: string;
    readonly Healthcheck?: {
      readonly Test?: readonly string[];
      readonly Interval?: number;
      readonly Timeout?: number;
      readonly StartPeriod?: number;
      readonly StartInterval?: number;
      readonly Retries?: number;
    };
    readonly [key: string]: unknown;
  };
  readonly rootfs: { readonly type: string; readonly diff_ids: readonly string[] };
  readonly history?: readonly {
    readonly created?: string;
    readonly created_by?: string;
    readonly author?: string;
    readonly comment?: string;
    readonly empty_layer?: boolean;
  }[];
  readonly [key: string]: unknown;
}

export interface ResolvedIndex {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly index: ImageIndex;
}

export interface ResolvedImage {
  readonly reference: Reference;
  // What the reference names at the registry: the index's digest when the tag or digest
  // names an index, else the manifest's. Docker shows this one as the repo digest.
  readonly digest: string;
  readonly index: ResolvedIndex | undefined;
  readonly manifestDigest: string;
  readonly manifestMediaType: string;
  readonly manifestBytes: Buffer;
  readonly manifest: ImageManifest;
  readonly configDigest: string;
  readonly configBytes: Buffer;
  readonly config: OciImageConfig;
  readonly layers: readonly BlobDescriptor[];
  // The platform of the chosen manifest: the index entry's, else the config's.
  readonly platform: Platform;
}

export type CredentialsLookup = (
  registry: string,
) => Credentials | undefined | Promise<Credentials | undefined>;

export interface RegistryClientOptions {
  // Called when a registry asks for authentication; docker.io for Docker Hub.
  readonly credentials?: CredentialsLookup;
  // Registries reached over plain HTTP, or HTTPS without verification: `host`,
  // `host:port`, or a CIDR matched against the host's addresses.
  readonly insecureRegistries?: readonly string[];
  // Loopback addresses (127.0.0.0/8, ::1, and names resolving to them) are insecure unless
  // this is false, as in docker.
  readonly loopbackInsecure?: boolean;
  // Docker's certs.d layout: `<certsDir>/<host[:port]>/*.crt` are extra CAs,
  // `*.cert` with the `*.key` of the same name a client certificate.
  readonly certsDir?: string;
  readonly userAgent?: string;
  // Attempts after the first for a request that fails for a transient reason (connection
  // lost, 5xx, 429), with exponential backoff from retryDelayMs.
  readonly retries?: number;
  readonly retryDelayMs?: number;
  // A connection with no data for this long counts as dropped.
  readonly idleTimeoutMs?: number;
  readonly maxSocketsPerRegistry?: number;
}

export interface FetchBlobOptions {
  readonly signal?: AbortSignal;
  // Bytes in the file so far (a resumed part included) and the blob's size.
  readonly onProgress?: (bytes: number, total: number) => void;
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
}

export interface PushBlobOptions {
  readonly signal?: AbortSignal;
  // Bytes sent in this attempt (from 0 again when the upload starts over) and the blob's
  // size; the size at once for a blob the repository has or mounts.
  readonly onProgress?: (bytes: number, total: number) => void;
  // Another repository on the same registry, named as Reference.repository names it
  // (library/busybox), that may hold the blob: the registry links it from there rather
  // than taking the bytes again, when it has it there and the account may pull it.
  readonly mountFrom?: string;
}

export type PushBlobResult = 'exists' | 'mounted' | 'pushed';

interface Endpoint {
  readonly registry: string;
  readonly origin: string;
  readonly agent: http.Agent;
  challenge: Challenge | undefined;
}

// A failure worth another attempt: the connection, a 5xx, a 429.
class Transient extends Error {}

// A failure of what is being pushed (reading the source, or it not matching its
// descriptor): neither the registry's fault nor worth another attempt, and passed on as it
// is rather than as the registry being unavailable.
class LocalFailure extends Error {
  readonly error: unknown;
  constructor(error: unknown) {
    super(errorMessage(error));
    this.error = error;
  }
}

export interface FetchedManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly parsed:
    | { readonly kind: 'index'; readonly index: ImageIndex }
    | { readonly kind: 'manifest'; readonly manifest: ImageManifest };
}

// Credentials one operation brings for one registry (a Docker client's X-Registry-Auth), in
// place of the stored ones. Its tokens are cached apart, under a hash of the credentials,
// so another operation never gets a token these credentials earned.
interface OperationCredentials {
  readonly registry: string;
  readonly creds: Credentials;
  readonly key: string;
}
const operationCredentials = new AsyncLocalStorage<OperationCredentials>();

// Runs fn with these credentials for every request it makes to the registry (named as a
// Reference names it: docker.io, host:port).
export function withCredentials<T>(
  registry: string,
  creds: Credentials,
  fn: () => Promise<T>,
): Promise<T> {
  const key = createHash('sha256')
    .update(`${creds.username}\0${creds.password}`)
    .digest('hex')
    .slice(0, 32);
  return operationCredentials.run({ registry: registry.toLowerCase(), creds, key }, fn);
}

export class RegistryClient {
  private readonly opts: RegistryClientOptions;
  private readonly endpoints = new Map<string, Promise<Endpoint>>();
  private readonly agents: http.Agent[] = [];
  private readonly tokens = new TokenCache();
  private readonly insecureNames = new Set<string>();
  private readonly insecureNets = new BlockList();
  private readonly blobLocks = new Map<string, Promise<unknown>>();
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly idleTimeoutMs: number;
  private readonly userAgent: string;

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = opts;
    this.retries = opts.retries ?? 5;
    this.retryDelayMs = opts.retryDelayMs ?? 500;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.userAgent = opts.userAgent ?? 'berth';
    if (opts.loopbackInsecure ?? true) {
      this.insecureNets.addSubnet('127.0.0.0', 8, 'ipv4');
      this.insecureNets.addSubnet('::1', 128, 'ipv6');
      this.insecureNames.add('localhost');
    }
    for (const entry of opts.insecureRegistries ?? []) {
      const slash = entry.indexOf('/');
      if (slash < 0) {
        this.insecureNames.add(entry.toLowerCase());
        continue;
      }
      const addr = entry.slice(0, slash);
      const prefix = Number(entry.slice(slash + 1));
      const family = isIP(addr);
      if (family === 0 || !Number.isInteger(prefix) || prefix < 0) {
        throw invalid('insecureRegistries', `"${entry}" is neither a host nor a CIDR`);
      }
      this.insecureNets.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  // Closes idle connections; requests in flight finish.
  close(): void {
    for (const a of this.agents) a.destroy();
    this.agents.length = 0;
    this.endpoints.clear();
  }

  // Drops what was learned about a registry's authentication, after its credentials
  // changed.
  forget(registry: string): void {
    this.tokens.forget(registry);
  }

  // Plain HTTP (or HTTPS without verification) is allowed for this registry.
  async isInsecure(registry: string): Promise<boolean> {
    const name = registry.toLowerCase();
    const host = hostOf(name);
    if (this.insecureNames.has(name) || this.insecureNames.has(host)) return true;
    let addresses: { address: string; family: number }[];
    if (isIP(host) !== 0) {
      addresses = [{ address: host, family: isIP(host) }];
    } else {
      addresses = await lookup(host, { all: true }).catch(() => []);
    }
    return addresses.some((a) =>
      this.insecureNets.check(a.address, a.family === 6 ? 'ipv6' : 'ipv4'),
    );
  }

  // Resolves a reference to one image for a platform: by tag or digest, through an image
  // index or manifest list when there is one. Every manifest's digest is computed and,
  // when the reference or an index names it, checked; so is the config's.
  async resolve(
    ref: Reference | string,
    platform?: Platform | string,
    opts: RequestOptions = {},
  ): Promise<ResolvedImage> {
    const r = typeof ref === 'string' ? parseReference(ref) : ref;
    const explicit = platform !== undefined;
    const want =
      platform === undefined
        ? hostPlatform()
        : typeof platform === 'string'
          ? parsePlatform(platform)
          : normalizePlatform(platform);
    const name = familiarReference(r);
    const top = await this.fetchManifest(r, r.digest ?? r.tag ?? 'latest', opts);

    let index: ResolvedIndex | undefined;
    let chosen = top;
    let entryPlatform: Platform | undefined;
    if (top.parsed.kind === 'index') {
      index = {
        digest: top.digest,
        mediaType: top.mediaType,
        bytes: top.bytes,
        index: top.parsed.index,
      };
      const candidates = top.parsed.index.manifests.filter((m) => MANIFEST_TYPES.has(m.mediaType));
      const entry = selectPlatform(candidates, want);
      if (entry === undefined) {
        const have = candidates
          .map((m) => (m.platform ? formatPlatform(normalizePlatform(m.platform)) : undefined))
          .filter((p): p is string => p !== undefined && !p.startsWith('unknown/'));
        throw new BerthError(
          'MANIFEST_UNKNOWN',
          `No manifest for ${formatPlatform(want)} in the image index of ${name} (it has ${
            have.length > 0 ? [...new Set(have)].join(', ') : 'none with a platform'
          })`,
          { platform: formatPlatform(want), available: have },
        );
      }
      chosen = await this.fetchManifest(r, entry.digest, opts);
      if (chosen.bytes.length !== entry.size) {
        throw imageInvalid(
          `Manifest ${entry.digest} of ${name} is ${chosen.bytes.length} bytes, its index says ${entry.size}`,
        );
      }
      if (chosen.parsed.kind !== 'manifest') {
        throw imageInvalid(
          `Image index ${top.digest} of ${name} names another index for ${formatPlatform(want)}`,
        );
      }
      entryPlatform = entry.platform && normalizePlatform(entry.platform);
    }
    if (chosen.parsed.kind !== 'manifest') throw new Error('unreachable: index after selection');
    const manifest = chosen.parsed.manifest;
    checkImageManifest(manifest, name);

    const configBytes = await this.fetchBlobBytes(r, manifest.config, MAX_CONFIG_BYTES, opts);
    const config = parseConfig(configBytes, manifest, name);
    const configPlatform = normalizePlatform({
      os: config.os ?? '',
      architecture: config.architecture ?? '',
      ...(config.variant ? { variant: config.variant } : {}),
    });
    // As docker does since 20.10: a single-platform image is used whatever the host, but a
    // platform asked for by name must be what the image is.
    if (index === undefined && explicit && platformRank(want, configPlatform) === undefined) {
      throw new BerthError(
        'MANIFEST_UNKNOWN',
        `Image ${name} does not match the requested platform: wanted ${formatPlatform(
          want,
        )}, it is ${formatPlatform(configPlatform)}`,
        { platform: formatPlatform(want) },
      );
    }
    return {
      reference: r,
      digest: top.digest,
      index,
      manifestDigest: chosen.digest,
      manifestMediaType: chosen.mediaType,
      manifestBytes: chosen.bytes,
      manifest,
      configDigest: manifest.config.digest,
      configBytes,
      config,
      layers: manifest.layers.map((l) => ({
        digest: l.digest,
        size: l.size,
        mediaType: l.mediaType,
      })),
      platform: entryPlatform ?? configPlatform,
    };
  }

  // One manifest or index by tag or digest, its digest computed over the bytes received
  // and checked against the digest asked for and the registry's Docker-Content-Digest.
  async fetchManifest(
    ref: Reference,
    tagOrDigest: string,
    opts: RequestOptions = {},
  ): Promise<FetchedManifest> {
    const name = `${repoName(ref)}${tagOrDigest.includes(':') ? '@' : ':'}${tagOrDigest}`;
    const wanted = tagOrDigest.includes(':') ? parseDigest(tagOrDigest) : undefined;
    const { bytes, headerDigest, contentType } = await this.withRetries(
      ref.registry,
      async () => {
        const res = await this.request(ref.registry, manifestPath(ref, tagOrDigest), {
          scope: pullScope(ref.repository),
          headers: { accept: ACCEPT },
          ...opts,
        });
        if (res.statusCode !== 200) throw await this.statusError(res, ref, `manifest ${name}`);
        return {
          bytes: await readBody(res, MAX_MANIFEST_BYTES, `manifest ${name}`),
          headerDigest: headerValue(res, 'docker-content-digest'),
          contentType: (headerValue(res, 'content-type') ?? '').split(';')[0]?.trim() ?? '',
        };
      },
      opts.signal,
    );
    const sha256 = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    let digest = sha256;
    if (wanted !== undefined) {
      const got = `${wanted.algorithm}:${createHash(wanted.algorithm).update(bytes).digest('hex')}`;
      if (got !== tagOrDigest) {
        throw imageInvalid(`Manifest ${name} failed verification: digest mismatch (got ${got})`);
      }
      digest = tagOrDigest;
    }
    if (
      headerDigest !== undefined &&
      headerDigest.startsWith('sha256:') &&
      headerDigest !== sha256
    ) {
      throw imageInvalid(
        `Manifest ${name} failed verification: digest mismatch (the registry says ${headerDigest}, the content is ${sha256})`,
      );
    }
    const parsed = parseManifest(bytes, contentType, name);
    const mediaType =
      parsed.kind === 'index'
        ? (parsed.index.mediaType ??
          (INDEX_TYPES.has(contentType) ? contentType : MEDIA_TYPES.ociIndex))
        : (parsed.manifest.mediaType ??
          (MANIFEST_TYPES.has(contentType) ? contentType : MEDIA_TYPES.ociManifest));
    return { digest, mediaType, bytes, parsed };
  }

  // A small blob (a config) in memory, verified.
  async fetchBlobBytes(
    ref: Reference,
    desc: BlobDescriptor,
    maxBytes: number,
    opts: RequestOptions = {},
  ): Promise<Buffer> {
    const d = parseDigest(desc.digest);
    if (desc.size > maxBytes) {
      throw imageInvalid(
        `Blob ${desc.digest} is ${desc.size} bytes, more than the ${maxBytes} allowed`,
      );
    }
    const bytes = await this.withRetries(
      ref.registry,
      async () => {
        const res = await this.request(ref.registry, blobPath(ref, desc.digest), {
          scope: pullScope(ref.repository),
          ...opts,
        });
        if (res.statusCode !== 200)
          throw await this.statusError(res, ref, `blob ${desc.digest} of ${repoName(ref)}`);
        return readBody(res, desc.size, `blob ${desc.digest}`);
      },
      opts.signal,
    );
    const got = `${d.algorithm}:${createHash(d.algorithm).update(bytes).digest('hex')}`;
    if (bytes.length !== desc.size || got !== desc.digest) {
      throw imageInvalid(
        `Blob ${desc.digest} failed verification: digest mismatch (got ${got}, ${bytes.length} bytes)`,
      );
    }
    return bytes;
  }

  // Streams a blob to destFile while hashing it. What destFile already holds is taken as
  // the start of the blob (a transfer cut short before), hashed, and the rest asked for
  // with a Range request (and if the whole then fails its digest, fetched once more from
  // the start); so is the rest after a connection lost mid-blob, a few times with
  // backoff. A blob whose digest or size does not match is removed and refused;
  // anything else that stops the transfer (abort, retries used up) leaves the part for
  // the next call. Calls for different files run in parallel; calls for one file queue.
  fetchBlob(
    ref: Reference,
    desc: BlobDescriptor,
    destFile: string,
    opts: FetchBlobOptions = {},
  ): Promise<void> {
    const before = this.blobLocks.get(destFile) ?? Promise.resolve();
    const run = before.then(
      () => this.fetchBlobNow(ref, desc, destFile, opts),
      () => this.fetchBlobNow(ref, desc, destFile, opts),
    );
    this.blobLocks.set(destFile, run);
    void run.then(
      () => this.blobLocks.get(destFile) === run && this.blobLocks.delete(destFile),
      () => this.blobLocks.get(destFile) === run && this.blobLocks.delete(destFile),
    );
    return run;
  }

  private async fetchBlobNow(
    ref: Reference,
    desc: BlobDescriptor,
    destFile: string,
    opts: FetchBlobOptions,
  ): Promise<void> {
    const { algorithm } = parseDigest(desc.digest);
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) {
      throw imageInvalid(`Blob ${desc.digest} has no valid size`);
    }
    const total = desc.size;
    // Not O_APPEND: Linux ignores pwrite's position on an O_APPEND file.
    const fh = await open(destFile, constants.O_RDWR | constants.O_CREAT, 0o644);
    let removed = false;
    const refuse = async (message: string): Promise<never> => {
      await fh.close().catch(() => undefined);
      await unlink(destFile).catch(() => undefined);
      removed = true;
      throw imageInvalid(message);
    };
    try {
      let hash = createHash(algorithm);
      let offset = (await fh.stat()).size;
      if (offset > total) {
        await fh.truncate(0);
        offset = 0;
      } else if (offset > 0) {
        await hashFile(fh, offset, hash);
      }
      // A part left by an earlier call may not be what the registry serves (another
      // writer, a crash mid-write): on a mismatch, it gets one fresh start.
      let partFromDisk = offset > 0;
      opts.onProgress?.(offset, total);

      let failures = 0;
      let lastError: unknown;
      for (;;) {
        while (offset < total) {
          if (failures > this.retries) {
            throw new BerthError(
              'REGISTRY_UNAVAILABLE',
              `Fetching blob ${desc.digest} from ${ref.registry} failed after ${failures} attempts (${offset} of ${total} bytes kept for a retry): ${errorMessage(lastError)}`,
              { digest: desc.digest, bytes: offset },
            );
          }
          if (failures > 0) await this.backoff(failures, opts.signal);
          const startedAt = offset;
          const pending: Buffer[] = [];
          let pendingBytes = 0;
          const flush = async () => {
            if (pendingBytes === 0) return;
            const bufs = pending.splice(0);
            const n = pendingBytes;
            pendingBytes = 0;
            await writeAllAt(fh, bufs, offset);
            for (const b of bufs) hash.update(b);
            offset += n;
            opts.onProgress?.(offset, total);
          };
          try {
            const res = await this.request(ref.registry, blobPath(ref, desc.digest), {
              scope: pullScope(ref.repository),
              headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
              ...(opts.signal ? { signal: opts.signal } : {}),
            });
            if (res.statusCode === 416) {
              // The part on disk is not a prefix the registry agrees with: start over.
              res.resume();
              await fh.truncate(0);
              hash = createHash(algorithm);
              offset = 0;
              throw new Transient('The registry refused the range; starting the blob over');
            }
            if (res.statusCode === 200 && offset > 0) {
              // A registry that ignores Range sends the whole blob again.
              await fh.truncate(0);
              hash = createHash(algorithm);
              offset = 0;
            } else if (res.statusCode === 206) {
              const start = /^bytes (\d+)-/.exec(headerValue(res, 'content-range') ?? '')?.[1];
              if (Number(start) !== offset) {
                res.resume();
                throw new Transient(
                  `The registry answered a range from byte ${start ?? '?'}, not ${offset}`,
                );
              }
            } else if (res.statusCode !== 200) {
              throw await this.statusError(res, ref, `blob ${desc.digest} of ${repoName(ref)}`);
            }
            const length = headerValue(res, 'content-length');
            if (length !== undefined && offset + Number(length) !== total) {
              res.destroy();
              return await refuse(
                `Blob ${desc.digest} failed verification: the registry sends ${offset + Number(length)} bytes, the manifest says ${total}`,
              );
            }
            for await (const chunk of res as AsyncIterable<Buffer>) {
              if (offset + pendingBytes + chunk.length > total) {
                res.destroy();
                return await refuse(
                  `Blob ${desc.digest} failed verification: the registry sent more than the ${total} bytes the manifest says`,
                );
              }
              pending.push(chunk);
              pendingBytes += chunk.length;
              if (pendingBytes >= WRITE_CHUNK) await flush();
            }
            await flush();
            if (offset < total)
              throw new Transient(`The connection ended after ${offset} of ${total} bytes`);
          } catch (e) {
            // Whatever arrived before the failure is a valid prefix: keep it.
            if (!removed) await flush();
            if (opts.signal?.aborted) throw opts.signal.reason ?? e;
            if (removed || !isRetryable(e)) throw unavailable(ref.registry, e);
            lastError = e;
            failures = offset > startedAt ? 1 : failures + 1;
          }
        }
        const got = `${algorithm}:${hash.digest('hex')}`;
        if (got === desc.digest) return;
        if (!partFromDisk) {
          return await refuse(
            `Blob ${desc.digest} failed verification: digest mismatch (got ${got})`,
          );
        }
        partFromDisk = false;
        await fh.truncate(0);
        hash = createHash(algorithm);
        offset = 0;
        opts.onProgress?.(offset, total);
      }
    } finally {
      if (!removed) await fh.close();
    }
  }

  // Checks credentials against a registry as `docker login` does: GET /v2/ with them,
  // through the token server when the registry asks for a token. Nothing is cached.
  async checkCredentials(
    registry: string,
    creds: Credentials,
    opts: RequestOptions = {},
  ): Promise<void> {
    const ep = await this.endpoint(registry);
    const url = new URL('/v2/', ep.origin);
    const first = await this.follow(ep, url, this.baseHeaders({}), opts.signal);
    if (first.statusCode === 200) {
      first.resume();
      return;
    }
    if (first.statusCode !== 401) throw await this.statusError(first, undefined, 'login');
    const challenge = pickChallenge(parseChallenges(first.headersDistinct['www-authenticate']));
    first.resume();
    if (challenge === undefined) {
      throw new BerthError(
        'REGISTRY_AUTH_FAILED',
        `Login to ${registry} failed: it offers no known way to log in`,
        {
          registry,
        },
      );
    }
    let authorization: string;
    if (challenge.scheme === 'basic') {
      authorization = basicAuthorization(creds);
    } else {
      const token = await this.requestToken(ep, challenge, [], creds, opts.signal);
      authorization = `Bearer ${token.token}`;
    }
    const second = await this.follow(ep, url, this.baseHeaders({ authorization }), opts.signal);
    second.resume();
    if (second.statusCode === 200) return;
    if (second.statusCode === 401 || second.statusCode === 403) {
      throw new BerthError(
        'REGISTRY_AUTH_FAILED',
        `Login to ${registry} failed: the registry refused the username or password of "${creds.username}"`,
        { registry },
      );
    }
    throw await this.statusError(second, undefined, 'login');
  }

  // --- push ------------------------------------------------------------------------

  // Whether the repository has the blob: a HEAD, which the registry answers without the
  // bytes.
  async blobExists(
    ref: Reference,
    desc: BlobDescriptor,
    opts: RequestOptions = {},
  ): Promise<boolean> {
    return this.hasBlob(ref, desc, pullScope(ref.repository), 'pull', opts.signal);
  }

  // Puts a blob into the repository unless it is there already: mounted from
  // opts.mountFrom where the registry can, else uploaded in one PUT streamed from open(0),
  // never held in memory. The bytes are checked against the descriptor on the way and the
  // last one is held back until the digest matches. An upload cut short or answered with
  // a 5xx or 429 starts over in a new upload session, with backoff as a pull has.
  async pushBlob(
    ref: Reference,
    desc: BlobDescriptor,
    open: (offset: number) => Readable,
    opts: PushBlobOptions = {},
  ): Promise<PushBlobResult> {
    parseDigest(desc.digest);
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) {
      throw imageInvalid(`Blob ${desc.digest} has no valid size`);
    }
    let from: string | undefined;
    if (opts.mountFrom !== undefined) {
      // Parsed as a name on the same registry: checked, and library/ added on Docker Hub.
      if (/[:@]/.test(opts.mountFrom)) {
        throw invalid('mountFrom', `"${opts.mountFrom}" is not a repository name`);
      }
      from = parseReference(`${ref.registry}/${opts.mountFrom}`, 'mountFrom').repository;
      if (from === ref.repository) from = undefined;
    }
    return this.pushing(ref, async () => {
      if (await this.hasBlob(ref, desc, pushScope(ref.repository), 'push', opts.signal)) {
        opts.onProgress?.(desc.size, desc.size);
        return 'exists';
      }
      return this.withRetries(
        ref.registry,
        async (): Promise<PushBlobResult> => {
          const session = await this.startUpload(ref, desc.digest, from, opts.signal);
          if (session === 'mounted') {
            opts.onProgress?.(desc.size, desc.size);
            return 'mounted';
          }
          await this.upload(ref, desc, session, open, opts);
          return 'pushed';
        },
        opts.signal,
      );
    });
  }

  // Puts a manifest or an index under a tag, or under its digest (checked against the
  // bytes); the registry takes it only once every blob and manifest it names is in the
  // repository. Returns its digest: the one given, else the sha256 of the bytes.
  async pushManifest(
    ref: Reference,
    tagOrDigest: string,
    bytes: Buffer,
    mediaType: string,
    opts: RequestOptions = {},
  ): Promise<string> {
    const repo = repoName(ref);
    const byDigest = tagOrDigest.includes(':');
    const name = `${repo}${byDigest ? '@' : ':'}${tagOrDigest}`;
    const sha256 = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    let digest = sha256;
    if (byDigest) {
      const d = parseDigest(tagOrDigest);
      digest = `${d.algorithm}:${createHash(d.algorithm).update(bytes).digest('hex')}`;
      if (digest !== tagOrDigest) {
        throw imageInvalid(`Manifest to push as ${name} has digest ${digest}`);
      }
    } else if (!TAG.test(tagOrDigest)) {
      throw invalid('tag', `"${tagOrDigest}" is not a valid tag`);
    }
    if (bytes.length > MAX_MANIFEST_BYTES) {
      throw imageInvalid(
        `Manifest ${name} is ${bytes.length} bytes, more than the ${MAX_MANIFEST_BYTES} a registry takes`,
      );
    }
    const headerDigest = await this.pushing(ref, () =>
      this.withRetries(
        ref.registry,
        async () => {
          const res = await this.request(ref.registry, manifestPath(ref, tagOrDigest), {
            scope: pushScope(ref.repository),
            method: 'PUT',
            headers: { 'content-type': mediaType, 'content-length': bytes.length },
            body: () => bytes,
            ...opts,
          });
          if (res.statusCode === 400) {
            // MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN (a blob not pushed first), TAG_INVALID.
            const body = await readBody(res, 64 << 10, `manifest ${name}`).catch(() =>
              Buffer.alloc(0),
            );
            throw imageInvalid(
              `Registry ${ref.registry} refused manifest ${name}: ${registryMessage(body)}`,
            );
          }
          if (res.statusCode !== 201 && res.statusCode !== 200) {
            throw await this.statusError(res, ref, `manifest ${name}`, 'push');
          }
          res.resume();
          return headerValue(res, 'docker-content-digest');
        },
        opts.signal,
      ),
    );
    if (
      headerDigest !== undefined &&
      headerDigest.startsWith('sha256:') &&
      headerDigest !== sha256
    ) {
      throw imageInvalid(
        `Manifest ${name} was stored as ${headerDigest}, not as the ${sha256} that was sent`,
      );
    }
    return digest;
  }

  private async hasBlob(
    ref: Reference,
    desc: BlobDescriptor,
    scope: string,
    action: 'pull' | 'push',
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    parseDigest(desc.digest);
    const what = `blob ${desc.digest} of ${repoName(ref)}`;
    return this.withRetries(
      ref.registry,
      async () => {
        const res = await this.request(ref.registry, blobPath(ref, desc.digest), {
          scope,
          method: 'HEAD',
          ...(signal ? { signal } : {}),
        });
        if (res.statusCode === 404) {
          res.resume();
          return false;
        }
        if (res.statusCode !== 200) throw await this.statusError(res, ref, what, action);
        res.resume();
        const length = headerValue(res, 'content-length');
        if (length !== undefined && Number(length) !== desc.size) {
          throw imageInvalid(
            `The registry has ${what} as ${length} bytes, its descriptor says ${desc.size}`,
          );
        }
        return true;
      },
      signal,
    );
  }

  // Opens an upload session, or mounts the blob from another repository. A registry that
  // cannot mount (the blob is not there) opens a session instead (202); one whose token
  // server will not let the account pull the other repository says 401 or 403, and a plain
  // session is asked for.
  private async startUpload(
    ref: Reference,
    digest: string,
    mountFrom: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<URL | 'mounted'> {
    const ep = await this.endpoint(ref.registry);
    const uploads = `/v2/${ref.repository}/blobs/uploads/`;
    const path =
      mountFrom === undefined
        ? uploads
        : `${uploads}?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}`;
    const scope =
      mountFrom === undefined
        ? pushScope(ref.repository)
        : `${pushScope(ref.repository)} ${pullScope(mountFrom)}`;
    const res = await this.request(ref.registry, path, {
      scope,
      method: 'POST',
      headers: { 'content-length': 0 },
      ...(signal ? { signal } : {}),
    });
    if (mountFrom !== undefined) {
      if (res.statusCode === 201) {
        res.resume();
        return 'mounted';
      }
      if (res.statusCode === 401 || res.statusCode === 403) {
        res.resume();
        return this.startUpload(ref, digest, undefined, signal);
      }
    }
    if (res.statusCode !== 202) {
      throw await this.statusError(
        res,
        ref,
        `the upload of blob ${digest} to ${repoName(ref)}`,
        'push',
      );
    }
    res.resume();
    const location = headerValue(res, 'location');
    if (location === undefined) {
      throw new BerthError(
        'REGISTRY_UNAVAILABLE',
        `Registry ${ref.registry} opened an upload to ${repoName(ref)} without a Location`,
        { registry: ref.registry },
      );
    }
    const url = new URL(location, new URL(path, ep.origin));
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && ep.origin.startsWith('http:'))) {
      throw new BerthError(
        'REGISTRY_UNAVAILABLE',
        `Registry ${ref.registry} sent an upload to ${url.origin}, which berth does not follow`,
        { registry: ref.registry },
      );
    }
    return url;
  }

  // The monolithic upload: one PUT of the whole blob to the session's Location.
  private async upload(
    ref: Reference,
    desc: BlobDescriptor,
    session: URL,
    open: (offset: number) => Readable,
    opts: PushBlobOptions,
  ): Promise<void> {
    const url = new URL(session);
    // The Location may carry a query of its own (distribution's _state): the digest joins
    // it, the rest left as the registry wrote it.
    url.search = `${url.search === '' ? '?' : `${url.search}&`}digest=${encodeURIComponent(desc.digest)}`;
    const what = `the upload of blob ${desc.digest} to ${repoName(ref)}`;
    opts.onProgress?.(0, desc.size);
    let res: IncomingMessage;
    try {
      res = await this.request(ref.registry, url.href, {
        scope: pushScope(ref.repository),
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'content-length': desc.size },
        body: () => checkedBody(open, desc, opts.onProgress),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (e) {
      this.cancelUpload(ref, session);
      throw e;
    }
    const status = res.statusCode ?? 0;
    if (status === 201) {
      res.resume();
      const stored = headerValue(res, 'docker-content-digest');
      if (stored !== undefined && stored !== desc.digest) {
        throw imageInvalid(`Registry ${ref.registry} stored blob ${desc.digest} as ${stored}`);
      }
      return;
    }
    // The session is gone (expired, or another instance behind a balancer): a new one.
    if (status === 404) {
      res.resume();
      throw new Transient(`Registry ${ref.registry} lost the session of ${what}`);
    }
    this.cancelUpload(ref, session);
    if (status === 400) {
      // DIGEST_INVALID, SIZE_INVALID: what was sent is not what the descriptor says.
      const body = await readBody(res, 64 << 10, what).catch(() => Buffer.alloc(0));
      throw imageInvalid(`Registry ${ref.registry} refused ${what}: ${registryMessage(body)}`);
    }
    throw await this.statusError(res, ref, what, 'push');
  }

  // Ends a session that will not be used again, so the registry drops it now rather than
  // at its next purge; best effort, and nothing waits for it. (docker-registry 2.8 refuses
  // once a PUT has written part of the blob: the Location's _state says offset 0.)
  private cancelUpload(ref: Reference, session: URL): void {
    void this.request(ref.registry, session.href, {
      scope: pushScope(ref.repository),
      method: 'DELETE',
    }).then(
      (res) => res.resume(),
      () => undefined,
    );
  }

  // Failures to authenticate from below (no credentials, a token server refusing them)
  // name the registry only; a push names the repository too.
  private async pushing<T>(ref: Reference, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (isBerthError(e, 'REGISTRY_AUTH_FAILED') && e.details?.['repository'] === undefined) {
        throw new BerthError(
          'REGISTRY_AUTH_FAILED',
          `Cannot push to ${repoName(ref)}: ${e.message}`,
          { ...e.details, repository: repoName(ref) },
        );
      }
      throw e;
    }
  }

  // --- transport -------------------------------------------------------------------

  private endpoint(registry: string): Promise<Endpoint> {
    let p = this.endpoints.get(registry);
    if (p === undefined) {
      p = this.connect(registry);
      this.endpoints.set(registry, p);
      p.catch(() => {
        if (this.endpoints.get(registry) === p) this.endpoints.delete(registry);
      });
    }
    return p;
  }

  // Finds how to talk to a registry with a GET /v2/, which also tells its authentication
  // scheme: HTTPS, and for an insecure registry HTTPS without verification and then plain
  // HTTP, as docker tries them.
  private async connect(registry: string): Promise<Endpoint> {
    const host = registryHost(registry);
    const insecure = await this.isInsecure(registry);
    const maxSockets = this.opts.maxSocketsPerRegistry ?? 8;
    const tlsAgent = new https.Agent({
      keepAlive: true,
      maxSockets,
      ...(await this.tlsOptions(registry)),
      ...(insecure ? { rejectUnauthorized: false } : {}),
    });
    this.agents.push(tlsAgent);
    try {
      return await this.ping(registry, `https://${host}`, tlsAgent);
    } catch (e) {
      if (!insecure) {
        throw new BerthError(
          'REGISTRY_UNAVAILABLE',
          `Registry ${registry} cannot be reached: ${errorMessage(e)}`,
          {
            registry,
          },
        );
      }
    }
    const plainAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.agents.push(plainAgent);
    try {
      return await this.ping(registry, `http://${host}`, plainAgent);
    } catch (e) {
      throw new BerthError(
        'REGISTRY_UNAVAILABLE',
        `Registry ${registry} cannot be reached: ${errorMessage(e)}`,
        {
          registry,
        },
      );
    }
  }

  private async ping(registry: string, origin: string, agent: http.Agent): Promise<Endpoint> {
    const res = await rawRequest(new URL('/v2/', origin), {
      headers: this.baseHeaders({}),
      agent,
      idleTimeoutMs: Math.min(this.idleTimeoutMs, 15_000),
    });
    const challenge =
      res.statusCode === 401
        ? pickChallenge(parseChallenges(res.headersDistinct['www-authenticate']))
        : undefined;
    res.resume();
    return { registry, origin, agent, challenge };
  }

  private async tlsOptions(
    registry: string,
  ): Promise<{ ca?: string[]; cert?: Buffer; key?: Buffer }> {
    if (this.opts.certsDir === undefined) return {};
    const dir = join(this.opts.certsDir, registry);
    const names: string[] = await readdir(dir).catch(() => []);
    const cas = await Promise.all(
      names.filter((n) => n.endsWith('.crt')).map((n) => readFile(join(dir, n), 'utf8')),
    );
    const out: { ca?: string[]; cert?: Buffer; key?: Buffer } = {};
    if (cas.length > 0) out.ca = [...rootCertificates, ...cas];
    const cert = names.find(
      (n) => n.endsWith('.cert') && names.includes(n.replace(/\.cert$/, '.key')),
    );
    if (cert !== undefined) {
      out.cert = await readFile(join(dir, cert));
      out.key = await readFile(join(dir, cert.replace(/\.cert$/, '.key')));
    }
    return out;
  }

  private baseHeaders(extra: OutgoingHttpHeaders): OutgoingHttpHeaders {
    return { 'user-agent': this.userAgent, ...extra };
  }

  // A GET (or HEAD) with redirects followed; Authorization stays with the registry's
  // origin. Other methods are not redirected: their body is sent once, and a registry
  // answers an upload with a Location to go on with, not a redirect.
  private async follow(
    ep: Endpoint,
    url: URL,
    headers: OutgoingHttpHeaders,
    signal: AbortSignal | undefined,
    method = 'GET',
    body?: Readable | Buffer,
  ): Promise<IncomingMessage> {
    let u = url;
    const h = { ...headers };
    for (let i = 0; i <= MAX_REDIRECTS; i++) {
      const res = await rawRequest(u, {
        method,
        headers: h,
        body,
        agent: u.origin === ep.origin ? ep.agent : undefined,
        signal,
        idleTimeoutMs: this.idleTimeoutMs,
      });
      if (method !== 'GET' && method !== 'HEAD') return res;
      const location = headerValue(res, 'location');
      const status = res.statusCode ?? 0;
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
      res.resume();
      const next = new URL(location, u);
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && u.protocol === 'http:')) {
        throw new BerthError(
          'REGISTRY_UNAVAILABLE',
          `Registry ${ep.registry} redirected to ${next.origin}, which berth does not follow`,
          {
            registry: ep.registry,
          },
        );
      }
      if (next.origin !== ep.origin) delete h['authorization'];
      u = next;
    }
    throw new BerthError(
      'REGISTRY_UNAVAILABLE',
      `Registry ${ep.registry} redirected more than ${MAX_REDIRECTS} times`,
      {
        registry: ep.registry,
      },
    );
  }

  // A request to the registry with authentication: what is known from the ping or an
  // earlier 401 is sent up front, and one 401 is answered by authenticating again (a
  // token may have expired, a new scope may need one). `scope` may hold several scopes,
  // space-separated as in OAuth2 (a cross-repository mount reads another repository).
  // `body` makes the body afresh for each attempt. `path` may be a whole URL (an upload's
  // Location); credentials go only to the registry's own origin.
  private async request(
    registry: string,
    path: string,
    o: {
      scope: string;
      method?: string;
      headers?: OutgoingHttpHeaders;
      body?: () => Readable | Buffer;
      signal?: AbortSignal;
    },
  ): Promise<IncomingMessage> {
    const ep = await this.endpoint(registry);
    const url = new URL(path, ep.origin);
    const own = url.origin === ep.origin;
    let authorization = own ? await this.authorization(ep, o.scope, false) : undefined;
    for (let attempt = 0; ; attempt++) {
      const headers = this.baseHeaders({
        ...o.headers,
        ...(authorization ? { authorization } : {}),
      });
      const res = await this.follow(ep, url, headers, o.signal, o.method, o.body?.());
      if (res.statusCode !== 401 || attempt > 0 || !own) return res;
      const challenge = pickChallenge(parseChallenges(res.headersDistinct['www-authenticate']));
      if (challenge === undefined) return res;
      res.resume();
      ep.challenge = challenge;
      authorization = await this.authorization(ep, o.scope, true);
      if (authorization === undefined) {
        throw new BerthError(
          'REGISTRY_AUTH_FAILED',
          `Registry ${registry} requires credentials: run berth login ${registry}`,
          { registry },
        );
      }
    }
  }

  private async authorization(
    ep: Endpoint,
    scope: string,
    fresh: boolean,
  ): Promise<string | undefined> {
    const c = ep.challenge;
    if (c === undefined) return undefined;
    const given = operationCredentials.getStore();
    const mine = given?.registry === ep.registry.toLowerCase() ? given : undefined;
    const creds = mine ? mine.creds : await this.opts.credentials?.(ep.registry);
    if (c.scheme === 'basic') return creds ? basicAuthorization(creds) : undefined;
    if (c.scheme !== 'bearer') return undefined;
    const key = TokenCache.key(ep.registry, c, scope) + (mine ? ` ${mine.key}` : '');
    if (fresh) this.tokens.invalidate(key);
    // No abort signal: the fetch is shared by every request waiting for this token, and
    // one caller giving up must not fail the others.
    const token = await this.tokens.fetch(key, Date.now, () =>
      this.requestToken(ep, c, scope.split(' '), creds, undefined),
    );
    return `Bearer ${token}`;
  }

  private async requestToken(
    ep: Endpoint,
    challenge: Challenge,
    scopes: readonly string[],
    creds: Credentials | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Token> {
    const url = tokenRequestUrl(challenge, scopes);
    // As docker sends it; some token servers pick the account by it.
    if (creds) url.searchParams.set('account', creds.username);
    const headers = this.baseHeaders(creds ? { authorization: basicAuthorization(creds) } : {});
    let res: IncomingMessage;
    try {
      res = await rawRequest(url, {
        headers,
        agent: url.origin === ep.origin ? ep.agent : undefined,
        signal,
        idleTimeoutMs: this.idleTimeoutMs,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new BerthError(
        'REGISTRY_UNAVAILABLE',
        `The token server of ${ep.registry} (${url.origin}) cannot be reached: ${errorMessage(e)}`,
        { registry: ep.registry },
      );
    }
    const status = res.statusCode ?? 0;
    const body = await readBody(res, 1 << 20, 'token').catch(() => Buffer.alloc(0));
    if (status === 401 || status === 403) {
      throw new BerthError(
        'REGISTRY_AUTH_FAILED',
        creds
          ? `Login to ${ep.registry} failed: the token server refused the username or password of "${creds.username}"`
          : `Registry ${ep.registry} requires credentials: run berth login ${ep.registry}`,
        { registry: ep.registry },
      );
    }
    if (status !== 200) {
      throw new BerthError(
        'REGISTRY_UNAVAILABLE',
        `The token server of ${ep.registry} answered ${status}: ${registryMessage(body)}`,
        { registry: ep.registry },
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      json = undefined;
    }
    return parseTokenResponse(json, Date.now());
  }

  private async statusError(
    res: IncomingMessage,
    ref: Reference | undefined,
    what: string,
    action: 'pull' | 'push' = 'pull',
  ): Promise<Error> {
    const status = res.statusCode ?? 0;
    const body = await readBody(res, 64 << 10, what).catch(() => Buffer.alloc(0));
    const detail = registryMessage(body);
    const registry = ref?.registry ?? '';
    const repo = ref ? repoName(ref) : '';
    if (status === 429 || status >= 500)
      return new Transient(`The registry answered ${status} to ${what}: ${detail}`);
    if (action === 'push' && (status === 401 || status === 403)) {
      // A 401 from basic auth cannot tell a wrong password from an account that may only
      // pull; a token registry says insufficient_scope for the latter, and a 403 is that.
      const creds = await this.opts.credentials?.(registry);
      const challenge = pickChallenge(parseChallenges(res.headersDistinct['www-authenticate']));
      const scopeShort = status === 403 || challenge?.params['error'] === 'insufficient_scope';
      return new BerthError(
        'REGISTRY_AUTH_FAILED',
        creds
          ? `Registry ${registry} denied "${creds.username}" push access to ${repo} (${
              scopeShort
                ? 'the account may not push there'
                : 'wrong credentials, or an account that may not push there'
            }): ${detail}`
          : `Push access denied for ${repo}: pushing to ${registry} needs credentials (berth login ${registry})`,
        { registry, repository: repo },
      );
    }
    if (status === 401) {
      return new BerthError(
        'REGISTRY_AUTH_FAILED',
        (await this.opts.credentials?.(registry))
          ? `Registry ${registry} denied access to ${repo} with the saved credentials: ${detail}`
          : `Pull access denied for ${repo}: the repository does not exist or needs credentials (berth login ${registry})`,
        { registry },
      );
    }
    if (status === 403) {
      return new BerthError(
        'REGISTRY_AUTH_FAILED',
        `Registry ${registry} denied access to ${repo}: ${detail}`,
        {
          registry,
        },
      );
    }
    if (status === 404) {
      return new BerthError('MANIFEST_UNKNOWN', `${capitalize(what)} not found: ${detail}`, {
        registry,
      });
    }
    return new BerthError(
      'REGISTRY_UNAVAILABLE',
      `Registry ${registry} answered ${status} to ${what}: ${detail}`,
      {
        registry,
      },
    );
  }

  private async withRetries<T>(
    registry: string,
    fn: () => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    for (let failures = 0; ;) {
      try {
        return await fn();
      } catch (e) {
        if (signal?.aborted) throw signal.reason ?? e;
        if (!isRetryable(e)) throw unavailable(registry, e);
        failures++;
        if (failures > this.retries) {
          throw new BerthError(
            'REGISTRY_UNAVAILABLE',
            `Registry ${registry}: ${errorMessage(e)} (after ${failures} attempts)`,
            { registry },
          );
        }
        await this.backoff(failures, signal);
      }
    }
  }

  private async backoff(failures: number, signal: AbortSignal | undefined): Promise<void> {
    const ms = Math.min(this.retryDelayMs * 2 ** (failures - 1), 8_000);
    await sleep(ms, undefined, signal ? { signal } : {});
  }
}

// --- helpers -------------------------------------------------------------------------

function rawRequest(
  url: URL,
  o: {
    method?: string | undefined;
    headers: OutgoingHttpHeaders;
    body?: Readable | Buffer | undefined;
    agent: http.Agent | undefined;
    signal?: AbortSignal | undefined;
    idleTimeoutMs: number;
  },
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const body = o.body;
    const req = mod.request(
      url,
      {
        method: o.method ?? 'GET',
        headers: o.headers,
        ...(o.agent ? { agent: o.agent } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      },
      (res) => {
        if (body instanceof Readable && !req.writableEnded) {
          // An answer before the whole body is sent (a 401, an error) means the server
          // reads no more of it: stop sending a layer nobody takes. The connection, with a
          // request cut short, cannot serve another, so it goes once the answer is read.
          body.unpipe(req);
          body.destroy();
          res.once('close', () => req.destroy());
        }
        resolve(res);
      },
    );
    // Also bounds the gaps while the body streams: a stalled transfer counts as dropped.
    req.setTimeout(o.idleTimeoutMs, () => {
      req.destroy(new Transient(`No data from ${url.host} for ${o.idleTimeoutMs} ms`));
    });
    req.on('error', reject);
    if (body === undefined) {
      req.end();
    } else if (body instanceof Readable) {
      body.once('error', (e) => req.destroy(e));
      // A request that fails or is aborted must not leave the source (a file) open.
      req.once('close', () => body.destroy());
      body.pipe(req);
    } else {
      req.end(body);
    }
  });
}

// What a lost or refused connection looks like from node:http and node:net.
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'HPE_INVALID_CONSTANT',
  'UND_ERR_SOCKET',
]);

function isRetryable(e: unknown): boolean {
  if (e instanceof Transient) return true;
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && NETWORK_CODES.has(code);
}

// A failure of the transport that is not already a BerthError, in berth's terms.
function unavailable(registry: string, e: unknown): unknown {
  if (e instanceof LocalFailure) return e.error;
  if (e instanceof BerthError || (e instanceof Error && e.name === 'AbortError')) return e;
  return new BerthError('REGISTRY_UNAVAILABLE', `Registry ${registry}: ${errorMessage(e)}`, {
    registry,
  });
}

// The source of an upload, counted and hashed on its way to the socket. The chunk that
// completes the size waits until the source has ended and the digest matches, so a source
// that differs from its descriptor never completes a request: the registry would refuse
// different bytes too, but only after taking all of them and in vaguer words, and it
// would take the right bytes with more behind them.
function checkedBody(
  open: (offset: number) => Readable,
  desc: BlobDescriptor,
  onProgress: ((bytes: number, total: number) => void) | undefined,
): Readable {
  const { algorithm } = parseDigest(desc.digest);
  const hash = createHash(algorithm);
  const refuse = (message: string) => new LocalFailure(imageInvalid(message));
  let n = 0;
  let last: Buffer | undefined;
  const out = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      n += chunk.length;
      if (n > desc.size) {
        done(
          refuse(`Blob ${desc.digest} to push is longer than the ${desc.size} bytes it should be`),
        );
        return;
      }
      hash.update(chunk);
      if (n === desc.size) {
        last = chunk;
        done();
        return;
      }
      onProgress?.(n, desc.size);
      done(null, chunk);
    },
    flush(done) {
      if (n < desc.size) {
        done(refuse(`Blob ${desc.digest} to push ended after ${n} of ${desc.size} bytes`));
        return;
      }
      const got = `${algorithm}:${hash.digest('hex')}`;
      if (got !== desc.digest) {
        done(
          refuse(`Blob ${desc.digest} to push does not match its digest (its content is ${got})`),
        );
        return;
      }
      onProgress?.(n, desc.size);
      done(null, last);
    },
  });
  let src: Readable;
  try {
    src = open(0);
  } catch (e) {
    throw new LocalFailure(e);
  }
  src.once('error', (e) => out.destroy(new LocalFailure(e)));
  out.once('close', () => src.destroy());
  src.pipe(out);
  return out;
}

async function readBody(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const length = Number(headerValue(res, 'content-length') ?? NaN);
  if (length > max) {
    res.destroy();
    throw imageInvalid(`${capitalize(what)} is ${length} bytes, more than the ${max} expected`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) {
      res.destroy();
      throw imageInvalid(`${capitalize(what)} is more than the ${max} bytes expected`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}

async function hashFile(fh: FileHandle, length: number, hash: Hash): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(WRITE_CHUNK * 4, length));
  for (let pos = 0; pos < length;) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, length - pos), pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

async function writeAllAt(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  let pos = position;
  let rest = bufs;
  while (rest.length > 0) {
    let { bytesWritten } = await fh.writev(rest, pos);
    pos += bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (bytesWritten >= b.length) bytesWritten -= b.length;
      else {
        next.push(b.subarray(bytesWritten));
        bytesWritten = 0;
      }
    }
    rest = next;
  }
}

function headerValue(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function hostOf(registry: string): string {
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  const colon = registry.lastIndexOf(':');
  return colon < 0 ? registry : registry.slice(0, colon);
}

// The repository as docker shows it: busybox, user/app, host:5000/app.
function repoName(ref: Reference): string {
  return familiarReference({ ...ref, tag: undefined, digest: undefined });
}

function manifestPath(ref: Reference, tagOrDigest: string): string {
  return `/v2/${ref.repository}/manifests/${tagOrDigest}`;
}

function blobPath(ref: Reference, digest: string): string {
  return `/v2/${ref.repository}/blobs/${digest}`;
}

function imageInvalid(message: string): BerthError {
  return new BerthError('IMAGE_INVALID', message);
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// The registry's own words from an error body ({"errors":[{"code","message"}]}).
function registryMessage(body: Buffer): string {
  const text = body.toString('utf8');
  try {
    const j = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const parts = (j.errors ?? []).map((e) =>
      [e.code, e.message].filter((x) => typeof x === 'string' && x !== '').join(': '),
    );
    if (parts.length > 0) return parts.join('; ');
  } catch {
    // not JSON: fall through to the text
  }
  return text.trim().slice(0, 200) || 'no details';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw imageInvalid(`${where} is not a descriptor`);
  const { mediaType, digest, size, platform, urls, annotations } = v;
  if (typeof mediaType !== 'string') throw imageInvalid(`${where} has no media type`);
  if (typeof digest !== 'string') throw imageInvalid(`${where} has no digest`);
  try {
    parseDigest(digest);
  } catch {
    throw imageInvalid(`${where} has an invalid digest "${digest}"`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw imageInvalid(`${where} has an invalid size`);
  }
  const d: {
    mediaType: string;
    digest: string;
    size: number;
    platform?: Platform;
    urls?: readonly string[];
    annotations?: Readonly<Record<string, string>>;
  } = { mediaType, digest, size };
  if (
    isObject(platform) &&
    typeof platform['os'] === 'string' &&
    typeof platform['architecture'] === 'string'
  ) {
    d.platform = {
      os: platform['os'],
      architecture: platform['architecture'],
      ...(typeof platform['variant'] === 'string' && platform['variant'] !== ''
        ? { variant: platform['variant'] }
        : {}),
    };
  }
  if (Array.isArray(urls)) d.urls = urls.filter((u): u is string => typeof u === 'string');
  if (isObject(annotations)) d.annotations = annotations as Record<string, string>;
  return d;
}

function parseManifest(
  bytes: Buffer,
  contentType: string,
  name: string,
): FetchedManifest['parsed'] {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw imageInvalid(`Manifest ${name} is not valid JSON`);
  }
  if (!isObject(j)) throw imageInvalid(`Manifest ${name} is not a JSON object`);
  const bodyType = typeof j['mediaType'] === 'string' ? j['mediaType'] : undefined;
  const type = bodyType ?? contentType;
  if (
    j['schemaVersion'] === 1 ||
    type === MEDIA_TYPES.dockerSchema1 ||
    type === MEDIA_TYPES.dockerSchema1Signed
  ) {
    throw imageInvalid(
      `Image ${name} has a Docker schema 1 manifest, which berth does not support`,
    );
  }
  if (j['schemaVersion'] !== 2)
    throw imageInvalid(`Manifest ${name} has schemaVersion ${String(j['schemaVersion'])}, not 2`);
  const isIndex =
    INDEX_TYPES.has(type) || (!MANIFEST_TYPES.has(type) && Array.isArray(j['manifests']));
  if (isIndex) {
    if (!Array.isArray(j['manifests'])) throw imageInvalid(`Image index ${name} has no manifests`);
    const manifests = j['manifests'].map((m, i) =>
      parseDescriptor(m, `Entry ${i} of image index ${name}`),
    );
    return {
      kind: 'index',
      index: {
        schemaVersion: 2,
        ...(bodyType ? { mediaType: bodyType } : {}),
        manifests,
        ...(isObject(j['annotations'])
          ? { annotations: j['annotations'] as Record<string, string> }
          : {}),
      },
    };
  }
  if (!MANIFEST_TYPES.has(type) && !('config' in j)) {
    throw imageInvalid(`Manifest ${name} has media type "${type}", which is not an image`);
  }
  if (!Array.isArray(j['layers'])) throw imageInvalid(`Manifest ${name} has no layers`);
  return {
    kind: 'manifest',
    manifest: {
      schemaVersion: 2,
      ...(bodyType ? { mediaType: bodyType } : {}),
      config: parseDescriptor(j['config'], `The config of manifest ${name}`),
      layers: j['layers'].map((l, i) => parseDescriptor(l, `Layer ${i} of manifest ${name}`)),
      ...(isObject(j['annotations'])
        ? { annotations: j['annotations'] as Record<string, string> }
        : {}),
    },
  };
}

function checkImageManifest(m: ImageManifest, name: string): void {
  if (!CONFIG_TYPES.has(m.config.mediaType)) {
    throw imageInvalid(`${name} is not a container image (its config is "${m.config.mediaType}")`);
  }
  for (const [i, l] of m.layers.entries()) {
    if (!LAYER_TYPES.has(l.mediaType)) {
      throw imageInvalid(
        `Layer ${i} of ${name} has media type "${l.mediaType}", which berth cannot unpack`,
      );
    }
  }
}

function parseConfig(bytes: Buffer, m: ImageManifest, name: string): OciImageConfig {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw imageInvalid(`The config of ${name} is not valid JSON`);
  }
  if (!isObject(j)) throw imageInvalid(`The config of ${name} is not a JSON object`);
  const rootfs = j['rootfs'];
  if (
    !isObject(rootfs) ||
    !Array.isArray(rootfs['diff_ids']) ||
    !rootfs['diff_ids'].every((d) => typeof d === 'string')
  ) {
    throw imageInvalid(`The config of ${name} has no rootfs.diff_ids`);
  }
  if (rootfs['diff_ids'].length !== m.layers.length) {
    throw imageInvalid(
      `The config of ${name} names ${rootfs['diff_ids'].length} layers, its manifest ${m.layers.length}`,
    );
  }
  if (j['config'] !== undefined && j['config'] !== null && !isObject(j['config'])) {
    throw imageInvalid(`The config of ${name} has a config that is not an object`);
  }
  return j as OciImageConfig;
}
