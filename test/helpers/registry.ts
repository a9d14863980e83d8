// Debian's docker-registry on a free loopback port with a temporary config and storage,
// optionally behind htpasswd basic auth, a token server of its own, or TLS with a test CA;
// test images built here as OCI layouts (real tar layers) and pushed with skopeo. stop()
// ends the registry by its pid and removes every file it made.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import {
  createServer as createHttpServer,
  get as httpGet,
  type IncomingMessage,
  type Server,
} from 'node:http';
import { get as httpsGet } from 'node:https';
import {
  connect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { link, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { execFile } from '../../src/util/exec.ts';

export interface RegistryUser {
  readonly username: string;
  readonly password: string;
  // What the token server lets this user do (pull, push); both unless told. htpasswd
  // auth has no such thing: any user it knows may push.
  readonly actions?: readonly string[];
}

export interface StartRegistryOptions {
  // htpasswd basic auth with these users.
  readonly htpasswd?: readonly RegistryUser[];
  // Token auth with a token server in this process that knows these users.
  readonly token?: { readonly users: readonly RegistryUser[] };
  // Serve HTTPS with a certificate for 127.0.0.1 from a fresh test CA (caFile).
  readonly tls?: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

// libtrust's key id, which docker-registry matches against the token's "kid": the SHA-256
// of the DER public key, cut to 240 bits, base32 in twelve groups of four.
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const sum = createHash('sha256').update(der).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of sum) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return (out.match(/.{4}/g) ?? []).join(':');
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

// The token server of the distribution token spec: GET ?service=&scope=, basic auth
// checked against its users; a known user gets the actions asked for on every scope (of
// them, only its `actions` when it has a list), an anonymous client a token with no
// access, a wrong password 401.
export class TokenServer {
  readonly issuer = 'berth-test-issuer';
  readonly service = 'berth-test-registry';
  requests = 0;
  // The scopes of each token request, in order.
  readonly scopes: string[][] = [];
  private readonly key: KeyObject;
  private readonly kid: string;
  private readonly users: readonly RegistryUser[];
  private server: Server | undefined;
  realm = '';

  constructor(users: readonly RegistryUser[]) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.key = privateKey;
    this.kid = libtrustKeyId(publicKey);
    this.users = users;
  }

  privateKeyPem(): string {
    return this.key.export({ type: 'pkcs8', format: 'pem' }).toString();
  }

  async listen(): Promise<void> {
    this.server = createHttpServer((req, res) => {
      this.requests++;
      const url = new URL(req.url ?? '/', 'http://x');
      this.scopes.push(url.searchParams.getAll('scope'));
      const user = this.authenticate(req);
      if (user === null) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      const access =
        user === undefined
          ? []
          : url.searchParams.getAll('scope').flatMap((s) => {
              const m = /^([a-z]+):(.+):([a-z*,]+)$/.exec(s);
              const actions = (m?.[3] ?? '')
                .split(',')
                .filter((a) => user.actions === undefined || user.actions.includes(a));
              return m ? [{ type: m[1], name: m[2], actions }] : [];
            });
      const now = Math.floor(Date.now() / 1000);
      const header = { typ: 'JWT', alg: 'ES256', kid: this.kid };
      const claims = {
        iss: this.issuer,
        sub: user?.username ?? '',
        aud: url.searchParams.get('service') ?? '',
        exp: now + 300,
        nbf: now - 10,
        iat: now,
        jti: randomBytes(8).toString('hex'),
        access,
      };
      const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
      const sig = sign('sha256', Buffer.from(input), { key: this.key, dsaEncoding: 'ieee-p1363' });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          token: `${input}.${b64url(sig)}`,
          expires_in: 300,
          issued_at: new Date().toISOString(),
        }),
      );
    });
    const srv = this.server;
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const addr = srv.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    this.realm = `http://127.0.0.1:${port}/token`;
  }

  // undefined: anonymous; null: wrong credentials.
  private authenticate(req: IncomingMessage): RegistryUser | undefined | null {
    const h = req.headers.authorization;
    if (h === undefined) return undefined;
    const m = /^Basic (.+)$/i.exec(h);
    if (!m) return null;
    const decoded = Buffer.from(m[1] ?? '', 'base64').toString();
    const colon = decoded.indexOf(':');
    const u = this.users.find(
      (x) => x.username === decoded.slice(0, colon) && x.password === decoded.slice(colon + 1),
    );
    return u ?? null;
  }

  async close(): Promise<void> {
    const srv = this.server;
    if (srv === undefined) return;
    srv.closeAllConnections();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
}

export class TestRegistry {
  readonly dir: string;
  readonly port: number;
  readonly host: string;
  readonly storage: string;
  readonly tokenServer: TokenServer | undefined;
  // The test CA's certificate when the registry serves TLS.
  caFile: string | undefined;
  private proc: ChildProcess | undefined;
  private output = '';
  private readonly opts: StartRegistryOptions;

  private constructor(dir: string, port: number, opts: StartRegistryOptions) {
    this.dir = dir;
    this.port = port;
    this.host = `127.0.0.1:${port}`;
    this.storage = join(dir, 'storage');
    this.opts = opts;
    this.tokenServer = opts.token ? new TokenServer(opts.token.users) : undefined;
  }

  static async start(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
    const r = new TestRegistry(await mkdtemp('/tmp/bt-registry-'), await freePort(), opts);
    try {
      await r.launch();
    } catch (e) {
      await r.stop();
      throw e;
    }
    return r;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  get log(): string {
    return this.output;
  }

  // The credentials skopeo pushes with.
  get pushUser(): RegistryUser | undefined {
    return this.opts.htpasswd?.[0] ?? this.opts.token?.users[0];
  }

  private async launch(): Promise<void> {
    await mkdir(this.storage);
    const lines = [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${this.storage}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${this.port}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
    ];
    if (this.opts.tls) {
      const { cert, key } = await this.makeTlsFiles();
      lines.push('  tls:', `    certificate: ${cert}`, `    key: ${key}`);
    }
    if (this.opts.htpasswd) {
      const file = join(this.dir, 'htpasswd');
      let text = '';
      for (const u of this.opts.htpasswd) {
        // bcrypt: the only hash docker-registry accepts.
        text += (await execFile(['htpasswd', '-Bbn', u.username, u.password])).stdout.trim() + '\n';
      }
      await writeFile(file, text);
      lines.push('auth:', '  htpasswd:', '    realm: berth-test', `    path: ${file}`);
    } else if (this.tokenServer) {
      await this.tokenServer.listen();
      const keyFile = join(this.dir, 'token-key.pem');
      const certFile = join(this.dir, 'token-cert.pem');
      await writeFile(keyFile, this.tokenServer.privateKeyPem(), { mode: 0o600 });
      await execFile([
        'openssl',
        'req',
        '-x509',
        '-new',
        '-key',
        keyFile,
        '-subj',
        '/CN=berth-test-token',
        '-days',
        '2',
        '-out',
        certFile,
      ]);
      lines.push(
        'auth:',
        '  token:',
        `    realm: ${this.tokenServer.realm}`,
        `    service: ${this.tokenServer.service}`,
        `    issuer: ${this.tokenServer.issuer}`,
        `    rootcertbundle: ${certFile}`,
      );
    }
    const config = join(this.dir, 'config.yml');
    await writeFile(config, lines.join('\n') + '\n');
    const p = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    p.stdout?.on('data', (b: Buffer) => (this.output += b.toString()));
    p.stderr?.on('data', (b: Buffer) => (this.output += b.toString()));
    await this.waitReady();
  }

  private async makeTlsFiles(): Promise<{ cert: string; key: string }> {
    const d = this.dir;
    const ca = join(d, 'ca.pem');
    const caKey = join(d, 'ca-key.pem');
    const key = join(d, 'server-key.pem');
    const csr = join(d, 'server.csr');
    const cert = join(d, 'server.pem');
    const ext = join(d, 'server.ext');
    const o = ['openssl'];
    await execFile(
      [...o, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'].concat([
        '-nodes',
        '-keyout',
        caKey,
        '-out',
        ca,
        '-days',
        '2',
        '-subj',
        '/CN=berth test CA',
      ]),
    );
    await execFile(
      [...o, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
        '-keyout',
        key,
        '-out',
        csr,
        '-subj',
        '/CN=127.0.0.1',
      ]),
    );
    await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await execFile(
      [...o, 'x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey].concat([
        '-CAcreateserial',
        '-out',
        cert,
        '-days',
        '2',
        '-extfile',
        ext,
      ]),
    );
    this.caFile = ca;
    return { cert, key };
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 20_000;
    const scheme = this.opts.tls ? 'https' : 'http';
    while (Date.now() < deadline) {
      if (this.proc?.exitCode !== null) {
        throw new Error(`docker-registry exited: ${this.output}`);
      }
      const ok = await new Promise<boolean>((resolve) => {
        const get = this.opts.tls ? httpsGet : httpGet;
        const req = get(
          `${scheme}://${this.host}/v2/`,
          { rejectUnauthorized: false, agent: false },
          (res) => {
            res.resume();
            resolve(res.statusCode === 200 || res.statusCode === 401);
          },
        );
        req.on('error', () => resolve(false));
      });
      if (ok) return;
      await sleep(50);
    }
    throw new Error(`docker-registry did not answer on ${this.host}: ${this.output}`);
  }

  // skopeo copy from a local OCI layout to this registry.
  async push(
    layout: string,
    layoutRef: string,
    repoAndTag: string,
    opts: { all?: boolean; format?: 'oci' | 'v2s2' } = {},
  ): Promise<void> {
    const u = this.pushUser;
    await execFile(
      [
        'skopeo',
        '--insecure-policy',
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        ...(u ? ['--dest-creds', `${u.username}:${u.password}`] : []),
        ...(opts.all ? ['--all'] : []),
        ...(opts.format ? ['--format', opts.format] : []),
        `oci:${layout}:${layoutRef}`,
        `docker://${this.host}/${repoAndTag}`,
      ],
      { timeoutMs: 120_000 },
    );
  }

  // Where the registry keeps a blob's bytes, for tests that corrupt one.
  blobDataPath(digest: string): string {
    const hex = digest.replace(/^sha256:/, '');
    return join(this.storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null && p.pid !== undefined) {
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      process.kill(p.pid, 'SIGTERM');
      const timedOut = await Promise.race([
        exited.then(() => false),
        sleep(5000, undefined, { ref: false }).then(() => true),
      ]);
      if (timedOut && p.exitCode === null) {
        process.kill(p.pid, 'SIGKILL');
        await exited;
      }
    }
    await this.tokenServer?.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

// --- test images ---------------------------------------------------------------------

export interface LayerFiles {
  // path → file content; a string starting with 'symlink:' makes a symlink,
  // 'hardlink:' a hard link to that path (within the same layer), 'dir' a directory.
  readonly [path: string]: string | Buffer;
}

export interface BuiltLayer {
  readonly digest: string;
  readonly diffId: string;
  readonly size: number;
  readonly mediaType: string;
  // The uncompressed tar.
  readonly tar: Buffer;
}

export interface BuiltImage {
  readonly manifestDigest: string;
  readonly manifestSize: number;
  readonly configDigest: string;
  readonly layers: readonly BuiltLayer[];
  readonly platform: { os: string; architecture: string; variant?: string };
}

// Writes an OCI image layout by hand: real tar layers (GNU tar, so hard links are real
// hard-link entries), a config with the diff ids, a manifest, and index.json entries named
// by `org.opencontainers.image.ref.name`, which skopeo's oci: transport looks up.
export class OciLayoutBuilder {
  readonly dir: string;
  private readonly refs: { ref: string; mediaType: string; digest: string; size: number }[] = [];
  private readonly work: string;

  private constructor(dir: string, work: string) {
    this.dir = dir;
    this.work = work;
  }

  static async create(): Promise<OciLayoutBuilder> {
    const base = await mkdtemp('/tmp/bt-oci-');
    const b = new OciLayoutBuilder(join(base, 'layout'), join(base, 'work'));
    await mkdir(join(b.dir, 'blobs', 'sha256'), { recursive: true });
    await mkdir(b.work);
    await writeFile(join(b.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    return b;
  }

  async blob(bytes: Buffer): Promise<{ digest: string; size: number }> {
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(this.dir, 'blobs', 'sha256', hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  }

  // A tar of the files, made by GNU tar from a directory tree; gzip unless told not to.
  async layer(files: LayerFiles, compress: 'gzip' | 'none' = 'gzip'): Promise<BuiltLayer> {
    const root = await mkdtemp(join(this.work, 'layer-'));
    for (const [p, content] of Object.entries(files)) {
      const full = join(root, p);
      await mkdir(dirname(full), { recursive: true });
      if (content === 'dir') await mkdir(full, { recursive: true });
      else if (typeof content === 'string' && content.startsWith('symlink:')) {
        await symlink(content.slice('symlink:'.length), full);
      } else if (typeof content === 'string' && content.startsWith('hardlink:')) {
        await link(join(root, content.slice('hardlink:'.length)), full);
      } else await writeFile(full, content);
    }
    const tarFile = join(this.work, `${randomBytes(6).toString('hex')}.tar`);
    const entries = (await readdir(root)).sort();
    await execFile([
      'tar',
      '-C',
      root,
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@1700000000',
      '--format=gnu',
      '-cf',
      tarFile,
      ...entries,
    ]);
    const tar = readFileSync(tarFile);
    await rm(tarFile);
    await rm(root, { recursive: true });
    const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
    const body = compress === 'gzip' ? gzipSync(tar) : tar;
    const b = await this.blob(body);
    return {
      ...b,
      diffId,
      mediaType:
        compress === 'gzip'
          ? 'application/vnd.oci.image.layer.v1.tar+gzip'
          : 'application/vnd.oci.image.layer.v1.tar',
      tar,
    };
  }

  async image(
    layers: readonly BuiltLayer[],
    platform: { os: string; architecture: string; variant?: string },
    config: Record<string, unknown> = {},
  ): Promise<BuiltImage> {
    const cfg = await this.blob(
      Buffer.from(
        JSON.stringify({
          created: '2024-01-01T00:00:00Z',
          ...platform,
          config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'], ...config },
          rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
          history: layers.map((_, i) => ({ created_by: `layer ${i}` })),
        }),
      ),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
        layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
      }),
    );
    const m = await this.blob(manifest);
    return {
      manifestDigest: m.digest,
      manifestSize: m.size,
      configDigest: cfg.digest,
      layers,
      platform,
    };
  }

  // Names an image (or an index made by `index`) in index.json.
  tag(ref: string, target: { digest: string; size: number; mediaType: string }): void {
    this.refs.push({ ref, ...target });
  }

  async index(images: readonly BuiltImage[]): Promise<{ digest: string; size: number }> {
    return this.blob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: images.map((i) => ({
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: i.manifestDigest,
            size: i.manifestSize,
            platform: i.platform,
          })),
        }),
      ),
    );
  }

  async writeIndex(): Promise<void> {
    await writeFile(
      join(this.dir, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: this.refs.map((r) => ({
          mediaType: r.mediaType,
          digest: r.digest,
          size: r.size,
          annotations: { 'org.opencontainers.image.ref.name': r.ref },
        })),
      }),
    );
  }

  async remove(): Promise<void> {
    await rm(join(this.dir, '..'), { recursive: true, force: true });
  }
}

// A TCP proxy that cuts the first `times` connections once each has carried `after`
// bytes towards the client (or, 'up', towards the registry), and notes the Range headers
// and request lines it sees.
export class CuttingProxy {
  port = 0;
  readonly ranges: string[] = [];
  readonly requests: string[] = [];
  cuts = 0;
  private readonly server: NetServer;
  private readonly sockets = new Set<Socket>();

  private constructor(target: number, after: number, times: number, direction: 'down' | 'up') {
    this.server = createNetServer((client) => {
      const upstream = connect(target, '127.0.0.1');
      this.sockets.add(client).add(upstream);
      let carried = 0;
      const cutThis = this.cuts < times;
      const cut = (b: Buffer, dir: 'down' | 'up'): boolean => {
        if (dir !== direction) return false;
        carried += b.length;
        if (!cutThis || carried <= after || this.cuts >= times) return false;
        this.cuts++;
        client.destroy();
        upstream.destroy();
        return true;
      };
      client.on('data', (b: Buffer) => {
        const text = b.toString('latin1');
        for (const m of text.matchAll(/^range: (\S+)\r$/gim)) this.ranges.push(m[1] ?? '');
        for (const m of text.matchAll(
          /^((?:GET|HEAD|POST|PUT|PATCH|DELETE) \S+) HTTP\/1\.1\r$/gm,
        )) {
          this.requests.push(m[1] ?? '');
        }
        if (!cut(b, 'up')) upstream.write(b);
      });
      upstream.on('data', (b: Buffer) => {
        if (!cut(b, 'down')) client.write(b);
      });
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
    });
  }

  static async start(
    target: number,
    after: number,
    times: number,
    direction: 'down' | 'up' = 'down',
  ): Promise<CuttingProxy> {
    const p = new CuttingProxy(target, after, times, direction);
    await new Promise<void>((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    const addr = p.server.address();
    p.port = typeof addr === 'object' && addr ? addr.port : 0;
    return p;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
