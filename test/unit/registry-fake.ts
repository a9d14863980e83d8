// A tiny in-process registry on loopback for the client's logic: the distribution API's
// manifest and blob GETs, Range, basic or bearer challenges with a token endpoint of its
// own, and misbehaviour on request (cut connections, ignored ranges, wrong bytes). The
// real registry is in test/integration/registry.test.ts.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRequest {
  readonly url: string;
  readonly authorization: string | undefined;
  readonly range: string | undefined;
}

export interface FakeOptions {
  auth?: 'none' | 'basic' | 'bearer';
  users?: Record<string, string>;
  // For the nth GET of a blob (0-based): send this many bytes of the answer, then cut.
  cutBlobAfter?: Record<number, number>;
  ignoreRange?: boolean;
  // Answer the first n manifest GETs with 503.
  failManifests?: number;
  // Reject the first bearer token presented, as a registry does with an expired one.
  rejectFirstToken?: boolean;
}

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export class FakeRegistry {
  readonly requests: FakeRequest[] = [];
  readonly manifests = new Map<string, { body: Buffer; type: string; digestHeader?: string }>();
  readonly blobs = new Map<string, Buffer>();
  tokenRequests = 0;
  tokensIssued = 0;
  opts: FakeOptions;
  private server: Server | undefined;
  private blobGets = 0;
  private manifestGets = 0;
  private rejectedToken = false;
  port = 0;

  constructor(opts: FakeOptions = {}) {
    this.opts = opts;
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  addBlob(b: Buffer | string): { digest: string; size: number } {
    const buf = Buffer.from(b);
    const digest = sha256(buf);
    this.blobs.set(digest, buf);
    return { digest, size: buf.length };
  }

  // Stores a manifest under its digest and, when given, a tag.
  addManifest(
    obj: unknown,
    type: string,
    tag?: string,
  ): { digest: string; size: number; body: Buffer } {
    const body = Buffer.from(JSON.stringify(obj));
    const digest = sha256(body);
    this.manifests.set(digest, { body, type });
    if (tag !== undefined) this.manifests.set(tag, { body, type });
    return { digest, size: body.length, body };
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res));
    const srv = this.server;
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    this.port = (srv.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    const srv = this.server;
    if (!srv) return;
    srv.closeAllConnections();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }

  private authorized(req: IncomingMessage): boolean {
    const auth = this.opts.auth ?? 'none';
    const h = req.headers.authorization;
    if (auth === 'none') return true;
    if (auth === 'basic') return h !== undefined && this.basicUser(h) !== undefined;
    if (h === undefined || !h.startsWith('Bearer tok-')) return false;
    if (this.opts.rejectFirstToken && !this.rejectedToken) {
      this.rejectedToken = true;
      return false;
    }
    return true;
  }

  private basicUser(h: string): string | undefined {
    const m = /^Basic (.+)$/.exec(h);
    if (!m) return undefined;
    const [u, ...p] = Buffer.from(m[1] ?? '', 'base64')
      .toString()
      .split(':');
    return u !== undefined && this.opts.users?.[u] === p.join(':') ? u : undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', `http://${this.host}`);
    this.requests.push({
      url: url.pathname + url.search,
      authorization: req.headers.authorization,
      range: req.headers.range,
    });
    if (url.pathname === '/token') {
      this.tokenRequests++;
      const h = req.headers.authorization;
      if (h !== undefined && this.basicUser(h) === undefined) {
        res.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad password"}]}');
        return;
      }
      this.tokensIssued++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: `tok-${this.tokensIssued}`, expires_in: 300 }));
      return;
    }
    if (!this.authorized(req)) {
      const challenge =
        this.opts.auth === 'basic'
          ? 'Basic realm="fake"'
          : `Bearer realm="http://${this.host}/token",service="fake",scope="repository:x:pull"`;
      res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    if (url.pathname === '/v2/') {
      res.writeHead(200).end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const [, , kind, id = ''] = m;
    if (kind === 'manifests') {
      if (this.manifestGets++ < (this.opts.failManifests ?? 0)) {
        res.writeHead(503).end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
        return;
      }
      const man = this.manifests.get(id);
      if (!man) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}');
        return;
      }
      res.writeHead(200, {
        'content-type': man.type,
        'docker-content-digest': man.digestHeader ?? sha256(man.body),
        'content-length': man.body.length,
      });
      res.end(man.body);
      return;
    }
    const blob = this.blobs.get(id);
    if (!blob) {
      res.writeHead(404).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}');
      return;
    }
    const n = this.blobGets++;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let body = blob;
    if (range && !this.opts.ignoreRange) {
      const start = Number(range[1]);
      if (start >= blob.length) {
        res.writeHead(416).end();
        return;
      }
      body = blob.subarray(start);
      res.writeHead(206, {
        'content-length': body.length,
        'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}`,
      });
    } else {
      res.writeHead(200, { 'content-length': body.length });
    }
    const cut = this.opts.cutBlobAfter?.[n];
    if (cut !== undefined) {
      res.flushHeaders();
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }
}

// An OCI image of the given layers in the fake, tagged.
export function addImage(
  reg: FakeRegistry,
  tag: string,
  layers: readonly Buffer[],
  platform = { os: 'linux', architecture: 'amd64' },
): { manifest: { digest: string; size: number }; layers: { digest: string; size: number }[] } {
  const ls = layers.map((l) => reg.addBlob(l));
  const config = reg.addBlob(
    JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: ls.map((l) => l.digest) } }),
  );
  const manifest = reg.addManifest(
    {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: ls.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...l })),
    },
    'application/vnd.oci.image.manifest.v1+json',
    tag,
  );
  return { manifest, layers: ls };
}
