// Typed client for berthd's native API over its unix socket, or over TCP with mutual TLS
// (Docker's -H tcp:// with --tlsverify). Uses node:http directly: it loads in a few
// milliseconds, which `berth run` pays on every call.
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type {
  ContainerSummary,
  CreateContainerRequest,
  CreateContainerResponse,
  ExecRequest,
  WaitCondition,
} from '../types/api.ts';
import type {
  CreateVolumeRequest,
  VolumeInspect,
  VolumeListResponse,
  VolumePruneResponse,
} from '../types/volume.ts';
import type { CreateNetworkRequest, NetworkInspect } from '../types/network.ts';
import { BerthError, ERROR_CODES, type ErrorCode } from '../util/errors.ts';

// Importing node:http as an ES module evaluates all its exports, and one of them is a lazy
// getter that loads undici: ~15 ms on every CLI call. require() leaves it lazy.
const requireBuiltin = createRequire(import.meta.url);
const { request: httpRequest } = requireBuiltin('node:http') as typeof Http;

export interface WaitResult {
  StatusCode: number;
  Error: { Message: string } | null;
}

// Docker's jsonmessage, the lines of a pull, push or load stream.
export interface JsonMessage {
  id?: string;
  status?: string;
  progressDetail?: { current?: number; total?: number };
  // Docker's preformatted progress text (deprecated there).
  progress?: string;
  // Build-style output, printed as it is.
  stream?: string;
  error?: string;
  errorDetail?: { code?: string | number; message: string };
  aux?: unknown;
}

// One row of GET /v1/images: one per tag, `<none>` repository and tag when untagged.
export interface ImageSummary {
  Id: string;
  RepoTags: string[] | null;
  RepoDigests: string[] | null;
  Created: number;
  Size: number;
  Labels: Record<string, string> | null;
  Repository: string;
  Tag: string;
  Digest?: string;
  Containers?: number;
}

// GET /v1/images/{name}/json, docker's shape (the fields berth fills; more may come).
export interface ImageInspect {
  Id: string;
  RepoTags: string[];
  RepoDigests: string[];
  Created: string;
  Size: number;
  Architecture: string;
  Os: string;
  Variant?: string;
  Config: Record<string, unknown>;
  RootFS: { Type: string; Layers: string[] };
  [field: string]: unknown;
}

// One line of `rmi`'s and prune's answers: either field.
export interface ImageDeleteItem {
  Untagged?: string;
  Deleted?: string;
}

export interface ImageHistoryItem {
  Id: string;
  Created: number;
  CreatedBy: string;
  Tags: string[] | null;
  Size: number;
  Comment: string;
}

export interface ImagePruneResponse {
  ImagesDeleted: ImageDeleteItem[] | null;
  SpaceReclaimed: number;
}

export interface LoginRequest {
  serveraddress?: string;
  username: string;
  password: string;
}

export interface AuthResponse {
  Status: string;
}

// The parsed lines of an ndjson body. The connection dropping before the body ends (berthd
// stopped mid-pull) is DAEMON_UNAVAILABLE, not a silent end.
async function* jsonLines<T>(res: IncomingMessage): AsyncGenerator<T> {
  const parse = (line: string): T => {
    try {
      return JSON.parse(line) as T;
    } catch {
      throw new BerthError('INTERNAL', `Malformed stream line from berthd: ${line.slice(0, 200)}`);
    }
  };
  res.setEncoding('utf8');
  const it = res[Symbol.asyncIterator]() as AsyncIterator<string>;
  let buf = '';
  try {
    for (;;) {
      let r: IteratorResult<string>;
      try {
        r = await it.next();
      } catch (e) {
        throw new BerthError(
          'DAEMON_UNAVAILABLE',
          `Connection to berthd lost: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      if (r.done) break;
      buf += r.value;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) yield parse(line);
      }
    }
    if (buf.trim()) yield parse(buf.trim());
  } finally {
    // A consumer that stops early (at an error line) closes the response.
    if (!res.complete) res.destroy();
  }
}

export const DEFAULT_HOST = 'unix:///run/berth/berth.sock';

export type Endpoint =
  | { readonly kind: 'unix'; readonly socketPath: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

// unix:///path (or a bare /path) and tcp://HOST:PORT, Docker's -H forms.
export function parseHost(host: string): Endpoint {
  if (host.startsWith('unix://')) return { kind: 'unix', socketPath: host.slice('unix://'.length) };
  if (host.startsWith('/')) return { kind: 'unix', socketPath: host };
  if (host.startsWith('tcp://')) {
    let u: URL | undefined;
    try {
      u = new URL(host);
    } catch {
      u = undefined;
    }
    const port = Number(u?.port);
    if (
      u &&
      u.hostname &&
      Number.isInteger(port) &&
      port > 0 &&
      port < 65536 &&
      (u.pathname === '' || u.pathname === '/')
    )
      return { kind: 'tcp', host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port };
  }
  throw new BerthError(
    'INVALID_ARGUMENT',
    `Invalid host: ${host} (expected unix:///path/to/berth.sock or tcp://HOST:PORT)`,
    { field: 'host' },
  );
}

export function socketPathOf(host: string): string {
  const e = parseHost(host);
  if (e.kind === 'unix') return e.socketPath;
  throw new BerthError('INVALID_ARGUMENT', `Invalid host: ${host} is not a unix socket`, {
    field: 'host',
  });
}

// The files of a mutual TLS connection: berthd's CA, and this client's certificate and key.
export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface TlsFlags {
  tlsverify?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
}

// Docker's rules, with BERTH_ for DOCKER_: TLS when --tlsverify or BERTH_TLS_VERIFY is set
// (or a TLS file is named); the files default to ca.pem, cert.pem and key.pem in
// BERTH_CERT_PATH, else ~/.berth. With TLS the daemon is always verified against the CA:
// there is no unverified mode.
export function tlsFilesFrom(
  f: TlsFlags,
  env: NodeJS.ProcessEnv = process.env,
): TlsFiles | undefined {
  const envVerify = env['BERTH_TLS_VERIFY'];
  const on =
    f.tlsverify === true ||
    (envVerify !== undefined && envVerify !== '' && envVerify !== '0' && envVerify !== 'false') ||
    f.tlscacert !== undefined ||
    f.tlscert !== undefined ||
    f.tlskey !== undefined;
  if (!on) return undefined;
  const dir = env['BERTH_CERT_PATH'] || join(homedir(), '.berth');
  return {
    ca: f.tlscacert ?? join(dir, 'ca.pem'),
    cert: f.tlscert ?? join(dir, 'cert.pem'),
    key: f.tlskey ?? join(dir, 'key.pem'),
  };
}

interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

function readTls(files: TlsFiles): TlsMaterial {
  const read = (path: string, field: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new BerthError(
        'INVALID_ARGUMENT',
        `Invalid ${field}: ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        { field },
      );
    }
  };
  return {
    ca: read(files.ca, 'tlscacert'),
    cert: read(files.cert, 'tlscert'),
    key: read(files.key, 'tlskey'),
  };
}

export interface ClientOptions {
  // Used for tcp:// hosts only (as Docker does); a unix socket is guarded by its mode.
  readonly tls?: TlsFiles | undefined;
}

type Query = Record<string, string | number | boolean | undefined>;

function withQuery(path: string, q?: Query): string {
  if (!q) return path;
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q))
    if (v !== undefined) p.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  const s = p.toString();
  return s ? `${path}?${s}` : path;
}

function toError(status: number, body: string): BerthError {
  try {
    const j = JSON.parse(body) as { code?: string; message?: string };
    const code = (j.code && j.code in ERROR_CODES ? j.code : 'INTERNAL') as ErrorCode;
    return new BerthError(code, j.message ?? `HTTP ${status}`, { status });
  } catch {
    return new BerthError('INTERNAL', `HTTP ${status}: ${body.slice(0, 200)}`, { status });
  }
}

export class BerthClient {
  readonly endpoint: Endpoint;
  private readonly tls: TlsMaterial | undefined;

  constructor(host: string = DEFAULT_HOST, opts: ClientOptions = {}) {
    this.endpoint = parseHost(host);
    this.tls = this.endpoint.kind === 'tcp' && opts.tls ? readTls(opts.tls) : undefined;
  }

  get address(): string {
    const e = this.endpoint;
    if (e.kind === 'unix') return `unix://${e.socketPath}`;
    return `tcp://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
  }

  private unavailable(e: Error): BerthError {
    const code = (e as NodeJS.ErrnoException).code;
    // A TLS failure's code alone (ERR_SSL_...) says little; its message says which side
    // refused whom.
    const why = this.tls ? e.message : (code ?? e.message);
    return new BerthError(
      'DAEMON_UNAVAILABLE',
      `Cannot connect to berthd at ${this.address}: ${why}. Is it running?`,
    );
  }

  private send(o: RequestOptions): ClientRequest {
    const e = this.endpoint;
    if (e.kind === 'unix') return httpRequest({ ...o, socketPath: e.socketPath });
    if (!this.tls) return httpRequest({ ...o, host: e.host, port: e.port });
    const { request } = requireBuiltin('node:https') as typeof Https;
    return request({
      ...o,
      host: e.host,
      port: e.port,
      ca: this.tls.ca,
      cert: this.tls.cert,
      key: this.tls.key,
      minVersion: 'TLSv1.2',
    });
  }

  private raw(
    method: string,
    path: string,
    opts: { body?: unknown; stream?: Readable; contentType?: string } = {},
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      let payload: string | undefined;
      if (opts.body !== undefined) {
        payload = JSON.stringify(opts.body);
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = String(Buffer.byteLength(payload));
      } else if (opts.stream) {
        headers['Content-Type'] = opts.contentType ?? 'application/octet-stream';
      }
      const req = this.send({ method, path, headers });
      req.on('response', resolve);
      req.on('error', (e) => reject(this.unavailable(e)));
      if (opts.stream) opts.stream.pipe(req);
      else req.end(payload);
    });
  }

  async call<T>(
    method: string,
    path: string,
    opts: { body?: unknown; query?: Query; stream?: Readable; contentType?: string } = {},
  ): Promise<{ status: number; data: T }> {
    const res = await this.raw(method, withQuery(path, opts.query), opts);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString();
    const status = res.statusCode ?? 0;
    if (status >= 400) throw toError(status, text);
    const isJson = (res.headers['content-type'] ?? '').includes('json');
    return { status, data: (isJson && text ? JSON.parse(text) : text) as T };
  }

  // Starts a request whose response body streams (wait, events, pull): resolves when the
  // headers arrive, which for wait means the daemon has registered the waiter. An error
  // status rejects with the daemon's error, read from the body.
  async stream(
    method: string,
    path: string,
    query?: Query,
    opts: { body?: unknown; stream?: Readable; contentType?: string } = {},
  ): Promise<IncomingMessage> {
    const res = await this.raw(method, withQuery(path, query), opts);
    if ((res.statusCode ?? 0) >= 400) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      throw toError(res.statusCode ?? 0, Buffer.concat(chunks).toString());
    }
    return res;
  }

  // Opens a hijacked bidirectional stream (attach, exec start).
  upgrade(path: string, query?: Query): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const req = this.send({
        method: 'POST',
        path: withQuery(path, query),
        headers: { Connection: 'Upgrade', Upgrade: 'tcp' },
      });
      req.on('upgrade', (_res, sock: Socket, head: Buffer) => {
        if (head.length > 0) sock.unshift(head);
        resolve(sock);
      });
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(toError(res.statusCode ?? 0, Buffer.concat(chunks).toString())));
      });
      req.on('error', (e) => reject(this.unavailable(e)));
      req.end();
    });
  }

  // ---- typed calls ----

  createContainer(body: CreateContainerRequest): Promise<CreateContainerResponse> {
    return this.call<CreateContainerResponse>('POST', '/v1/containers', { body }).then(
      (r) => r.data,
    );
  }
  startContainer(id: string): Promise<void> {
    return this.call('POST', `/v1/containers/${encodeURIComponent(id)}/start`).then(
      () => undefined,
    );
  }
  stopContainer(id: string, t?: number): Promise<void> {
    return this.call('POST', `/v1/containers/${encodeURIComponent(id)}/stop`, {
      query: { t },
    }).then(() => undefined);
  }
  restartContainer(id: string, t?: number): Promise<void> {
    return this.call('POST', `/v1/containers/${encodeURIComponent(id)}/restart`, {
      query: { t },
    }).then(() => undefined);
  }
  killContainer(id: string, signal?: string): Promise<void> {
    return this.call('POST', `/v1/containers/${encodeURIComponent(id)}/kill`, {
      query: { signal },
    }).then(() => undefined);
  }
  renameContainer(id: string, name: string): Promise<void> {
    return this.call('POST', `/v1/containers/${encodeURIComponent(id)}/rename`, {
      query: { name },
    }).then(() => undefined);
  }
  removeContainer(id: string, force: boolean): Promise<void> {
    return this.call('DELETE', `/v1/containers/${encodeURIComponent(id)}`, {
      query: { force },
    }).then(() => undefined);
  }
  inspectContainer(id: string, size = false): Promise<Record<string, unknown>> {
    return this.call<Record<string, unknown>>('GET', `/v1/containers/${encodeURIComponent(id)}`, {
      query: { size },
    }).then((r) => r.data);
  }
  listContainers(
    all: boolean,
    filters?: Record<string, string[]>,
    size = false,
  ): Promise<ContainerSummary[]> {
    return this.call<ContainerSummary[]>('GET', '/v1/containers', {
      query: { all, size, filters: filters && JSON.stringify(filters) },
    }).then((r) => r.data);
  }
  // Resolves once the daemon has registered the wait (so a start after it cannot race the
  // exit); `result` settles when the condition holds. Wrapped in an object because an async
  // function would otherwise flatten the inner promise.
  async waitContainer(
    id: string,
    condition: WaitCondition,
  ): Promise<{ result: Promise<WaitResult> }> {
    const res = await this.stream('POST', `/v1/containers/${encodeURIComponent(id)}/wait`, {
      condition,
    });
    const result = (async () => {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString();
      if (!text)
        throw new BerthError('DAEMON_UNAVAILABLE', 'Connection to berthd closed while waiting');
      return JSON.parse(text) as WaitResult;
    })();
    result.catch(() => undefined);
    return { result };
  }
  attachContainer(id: string, stdin: boolean): Promise<Socket> {
    return this.upgrade(`/v1/containers/${encodeURIComponent(id)}/attach`, {
      stream: true,
      stdin,
      stdout: true,
      stderr: true,
    });
  }
  resizeContainer(id: string, h: number, w: number): Promise<void> {
    return this.call('POST', `/v1/containers/${encodeURIComponent(id)}/resize`, {
      query: { h, w },
    }).then(() => undefined);
  }
  top(id: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    return this.call<{ Titles: string[]; Processes: string[][] }>(
      'GET',
      `/v1/containers/${encodeURIComponent(id)}/top`,
    ).then((r) => r.data);
  }
  createExec(id: string, body: ExecRequest): Promise<{ Id: string }> {
    return this.call<{ Id: string }>('POST', `/v1/containers/${encodeURIComponent(id)}/exec`, {
      body,
    }).then((r) => r.data);
  }
  startExec(execId: string): Promise<Socket> {
    return this.upgrade(`/v1/exec/${execId}/start`);
  }
  inspectExec(execId: string): Promise<{ Running: boolean; ExitCode: number | null }> {
    return this.call<{ Running: boolean; ExitCode: number | null }>(
      'GET',
      `/v1/exec/${execId}`,
    ).then((r) => r.data);
  }
  resizeExec(execId: string, h: number, w: number): Promise<void> {
    return this.call('POST', `/v1/exec/${execId}/resize`, { query: { h, w } }).then(
      () => undefined,
    );
  }
  // ---- images ----

  // The stream of a pull: resolves once berthd has accepted the request (a bad reference
  // rejects here), then yields its jsonmessage lines; a failure during the pull is an
  // `error` line, not a rejection.
  async pullImage(image: string, platform?: string): Promise<AsyncGenerator<JsonMessage>> {
    const body: { image: string; platform?: string } = { image };
    if (platform !== undefined) body.platform = platform;
    return jsonLines<JsonMessage>(
      await this.stream('POST', '/v1/images/pull', undefined, { body }),
    );
  }
  async pushImage(image: string): Promise<AsyncGenerator<JsonMessage>> {
    return jsonLines<JsonMessage>(
      await this.stream('POST', '/v1/images/push', undefined, { body: { image } }),
    );
  }
  // Sends an image archive (docker save's format, or an OCI layout tar).
  async loadImage(tar: Readable): Promise<AsyncGenerator<JsonMessage>> {
    return jsonLines<JsonMessage>(
      await this.stream('POST', '/v1/images/load', undefined, {
        stream: tar,
        contentType: 'application/x-tar',
      }),
    );
  }
  // The archive of the images, as a byte stream; unknown names reject before it starts.
  saveImages(names: readonly string[]): Promise<IncomingMessage> {
    const q = new URLSearchParams();
    for (const n of names) q.append('names', n);
    return this.stream('GET', `/v1/images/save?${q.toString()}`);
  }
  listImages(opts: { all?: boolean; digests?: boolean } = {}): Promise<ImageSummary[]> {
    return this.call<ImageSummary[]>('GET', '/v1/images', {
      query: { all: opts.all || undefined, digests: opts.digests || undefined },
    }).then((r) => r.data);
  }
  inspectImage(name: string): Promise<ImageInspect> {
    return this.call<ImageInspect>('GET', `/v1/images/${encodeURIComponent(name)}/json`).then(
      (r) => r.data,
    );
  }
  removeImage(name: string, force: boolean): Promise<ImageDeleteItem[]> {
    return this.call<ImageDeleteItem[]>('DELETE', `/v1/images/${encodeURIComponent(name)}`, {
      query: { force: force || undefined },
    }).then((r) => r.data);
  }
  tagImage(source: string, repo: string, tag: string): Promise<void> {
    return this.call('POST', `/v1/images/${encodeURIComponent(source)}/tag`, {
      query: { repo, tag },
    }).then(() => undefined);
  }
  imageHistory(name: string): Promise<ImageHistoryItem[]> {
    return this.call<ImageHistoryItem[]>(
      'GET',
      `/v1/images/${encodeURIComponent(name)}/history`,
    ).then((r) => r.data);
  }
  pruneImages(all: boolean): Promise<ImagePruneResponse> {
    return this.call<ImagePruneResponse>('POST', '/v1/images/prune', {
      query: { all: all || undefined },
    }).then((r) => r.data);
  }
  login(body: LoginRequest): Promise<AuthResponse> {
    return this.call<AuthResponse>('POST', '/v1/auth', { body }).then((r) => r.data);
  }
  logout(serveraddress?: string): Promise<AuthResponse> {
    return this.call<AuthResponse>('POST', '/v1/auth/logout', {
      body: serveraddress === undefined ? {} : { serveraddress },
    }).then((r) => r.data);
  }
  importImage(stream: Readable, repo: string): Promise<Record<string, unknown>> {
    return this.call<Record<string, unknown>>('POST', '/v1/images/import', {
      query: { repo },
      stream,
      contentType: 'application/x-tar',
    }).then((r) => r.data);
  }
  createVolume(body: CreateVolumeRequest): Promise<VolumeInspect> {
    return this.call<VolumeInspect>('POST', '/v1/volumes', { body }).then((r) => r.data);
  }
  listVolumes(): Promise<VolumeListResponse> {
    return this.call<VolumeListResponse>('GET', '/v1/volumes').then((r) => r.data);
  }
  inspectVolume(name: string): Promise<VolumeInspect> {
    return this.call<VolumeInspect>('GET', `/v1/volumes/${encodeURIComponent(name)}`).then(
      (r) => r.data,
    );
  }
  removeVolume(name: string, force: boolean): Promise<void> {
    return this.call('DELETE', `/v1/volumes/${encodeURIComponent(name)}`, {
      query: { force },
    }).then(() => undefined);
  }
  pruneVolumes(): Promise<VolumePruneResponse> {
    return this.call<VolumePruneResponse>('POST', '/v1/volumes/prune').then((r) => r.data);
  }
  createNetwork(body: CreateNetworkRequest): Promise<NetworkInspect> {
    return this.call<NetworkInspect>('POST', '/v1/networks', { body }).then((r) => r.data);
  }
  listNetworks(): Promise<NetworkInspect[]> {
    return this.call<NetworkInspect[]>('GET', '/v1/networks').then((r) => r.data);
  }
  inspectNetwork(nameOrId: string): Promise<NetworkInspect> {
    return this.call<NetworkInspect>('GET', `/v1/networks/${encodeURIComponent(nameOrId)}`).then(
      (r) => r.data,
    );
  }
  removeNetwork(nameOrId: string): Promise<void> {
    return this.call('DELETE', `/v1/networks/${encodeURIComponent(nameOrId)}`).then(
      () => undefined,
    );
  }
  version(): Promise<Record<string, unknown>> {
    return this.call<Record<string, unknown>>('GET', '/v1/version').then((r) => r.data);
  }
}
