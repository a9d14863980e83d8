// Where berthd serves its API: the unix socket (root and the berth group, mode 0660) and,
// only when asked, TCP listeners, which speak mutual TLS unless --insecure-tcp says
// otherwise. Every listener hands its connections to the one HTTP server, so all of them
// get the same routes, limits, timeouts and hijacked streams (attach, exec start).
import { chmod, chown, mkdir, readFile, rm, stat } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { dirname, isAbsolute } from 'node:path';
import {
  createSecureContext,
  createServer as createTlsServer,
  type TLSSocket,
  type SecureContextOptions,
} from 'node:tls';
import type { Logger } from 'pino';
import { BerthError, errorMessage } from '../util/errors.ts';
import { execFile } from '../util/exec.ts';

export type ListenAddress =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

export interface ListenerPlan {
  readonly socket: string;
  readonly tcp: readonly (ListenAddress & { kind: 'tcp' })[];
  // Absent: the TCP listeners (if any) are plain, which --insecure-tcp allowed.
  readonly tls?: TlsFiles;
}

export interface ListenerOptions {
  readonly hosts: readonly string[];
  // The socket --socket named, or undefined when it was left to its default.
  readonly socket: string | undefined;
  readonly defaultSocket: string;
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  readonly tlsCa?: string | undefined;
  readonly insecureTcp: boolean;
}

const bad = (field: string, msg: string) =>
  new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${msg}`, { field });

// Docker's -H forms: unix:///path/to.sock and tcp://HOST:PORT (an IPv6 host in brackets).
export function parseListenAddress(s: string, field = 'host'): ListenAddress {
  if (s.startsWith('unix://')) {
    const path = s.slice('unix://'.length);
    if (!isAbsolute(path)) throw bad(field, `"${s}" is not unix:///absolute/path`);
    return { kind: 'unix', path };
  }
  if (s.startsWith('tcp://')) {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw bad(field, `"${s}" is not tcp://HOST:PORT`);
    }
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(u.port);
    if (
      !host ||
      !u.port ||
      !Number.isInteger(port) ||
      port < 1 ||
      port > 65535 ||
      (u.pathname !== '' && u.pathname !== '/') ||
      u.search ||
      u.hash ||
      u.username ||
      u.password
    )
      throw bad(field, `"${s}" is not tcp://HOST:PORT`);
    return { kind: 'tcp', host, port };
  }
  throw bad(field, `"${s}" is not unix:///path or tcp://HOST:PORT`);
}

export function formatAddress(a: ListenAddress): string {
  if (a.kind === 'unix') return `unix://${a.path}`;
  return `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

// Checks the listener flags together, before anything is opened. A TCP listener is served
// only with mutual TLS, or plainly when --insecure-tcp asks for it in so many words.
export function planListeners(o: ListenerOptions): ListenerPlan {
  const addrs = o.hosts.map((h) => parseListenAddress(h));
  const unix = addrs.filter((a) => a.kind === 'unix');
  const tcp = addrs.filter((a) => a.kind === 'tcp');
  if (unix.length > 1) throw bad('host', 'berthd serves one unix socket; give unix:// once');
  const fromHost = unix[0]?.path;
  if (fromHost !== undefined && o.socket !== undefined && fromHost !== o.socket)
    throw bad('host', `unix://${fromHost} and --socket ${o.socket} name two sockets; give one`);
  const socket = fromHost ?? o.socket ?? o.defaultSocket;
  const given = {
    'tls-cert': o.tlsCert,
    'tls-key': o.tlsKey,
    'tls-ca': o.tlsCa,
  };
  const present = Object.entries(given).filter(([, v]) => v !== undefined && v !== '');
  if (present.length > 0 && present.length < 3) {
    const missing = Object.keys(given).filter((k) => !present.some(([p]) => p === k));
    throw bad(
      missing[0] ?? 'tls-cert',
      `mutual TLS needs --tls-cert, --tls-key and --tls-ca; --${missing.join(', --')} missing`,
    );
  }
  const tls =
    present.length === 3
      ? { cert: o.tlsCert as string, key: o.tlsKey as string, ca: o.tlsCa as string }
      : undefined;
  if (tls && tcp.length === 0)
    throw bad('tls-cert', 'TLS files are given but no -H tcp://HOST:PORT to serve them on');
  if (tls && o.insecureTcp)
    throw bad('insecure-tcp', 'conflicts with --tls-cert, --tls-key and --tls-ca; give one');
  if (tcp.length > 0 && !tls && !o.insecureTcp)
    throw bad(
      'host',
      `refusing to serve the API on ${tcp.map(formatAddress).join(', ')} without mutual TLS: ` +
        'give --tls-cert, --tls-key and --tls-ca (client certificates must chain to the CA), ' +
        'or --insecure-tcp to serve it unauthenticated',
    );
  return { socket, tcp, ...(tls ? { tls } : {}) };
}

// The socket's group: a name (looked up through NSS, as `getent` does) or a number.
// Undefined when there is no such group.
export async function lookupGroup(name: string): Promise<number | undefined> {
  if (/^\d+$/.test(name)) return Number(name);
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(name) || name.length > 256)
    throw bad('group', `"${name}" is not a group name`);
  const r = await execFile(['getent', 'group', name], { allowFailure: true });
  if (r.code !== 0) return undefined;
  const gid = Number(r.stdout.split(':')[2]);
  return Number.isInteger(gid) ? gid : undefined;
}

function listening(server: NetServer): Promise<void> {
  return new Promise((resolve, reject) => {
    const ok = () => {
      server.off('error', fail);
      resolve();
    };
    const fail = (e: Error) => {
      server.off('listening', ok);
      reject(e);
    };
    server.once('listening', ok);
    server.once('error', fail);
  });
}

// Binds the HTTP server to the socket. The umask makes the socket unreachable for
// others from the moment it exists (bind happens inside listen(), synchronously); the
// group and mode are set before the first connection could be served by anyone else.
export async function listenUnix(
  server: HttpServer,
  path: string,
  group: string,
  log: Logger,
): Promise<{ gid: number | undefined }> {
  const gid = group === '' ? undefined : await lookupGroup(group);
  await rm(path, { force: true });
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const up = listening(server);
  const umask = process.umask(0o177);
  try {
    server.listen(path);
  } finally {
    process.umask(umask);
  }
  try {
    await up;
  } catch (e) {
    throw new BerthError(
      'INVALID_ARGUMENT',
      `Invalid socket: cannot listen on ${path}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
      { field: 'socket' },
    );
  }
  if (gid === undefined) {
    await chmod(path, 0o600);
    if (group !== '')
      log.warn(
        { socket: path, group },
        `group ${group} does not exist: the API socket is root's only (the installer makes the group: groupadd --system ${group})`,
      );
    return { gid };
  }
  try {
    await chown(path, process.getuid?.() ?? 0, gid);
    await chmod(path, 0o660);
  } catch (e) {
    await chmod(path, 0o600);
    log.warn(
      { socket: path, group, err: errorMessage(e) },
      'cannot give the API socket to its group: it stays root-only',
    );
    return { gid: undefined };
  }
  const closed = await unsearchable(dirname(path), gid);
  if (closed !== undefined)
    log.warn(
      { socket: path, group, dir: closed },
      `members of ${group} cannot reach the API socket: ${closed} is not searchable by them`,
    );
  return { gid };
}

// The first directory above the socket that members of the group cannot pass through.
async function unsearchable(dir: string, gid: number): Promise<string | undefined> {
  for (let d = dir; ; d = dirname(d)) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0 && !(st.gid === gid && (st.mode & 0o010) !== 0)) return d;
    if (d === dirname(d)) return undefined;
  }
}

async function readTlsFile(path: string, field: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    throw bad(field, `${path}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`);
  }
}

export async function loadTls(files: TlsFiles): Promise<SecureContextOptions> {
  const opts = {
    cert: await readTlsFile(files.cert, 'tls-cert'),
    key: await readTlsFile(files.key, 'tls-key'),
    ca: await readTlsFile(files.ca, 'tls-ca'),
  };
  // Fail at start, with the flag named, rather than at the first handshake.
  try {
    createSecureContext(opts);
  } catch (e) {
    throw bad(
      'tls-cert',
      `cannot use ${files.cert} with ${files.key} and ${files.ca}: ${errorMessage(e)}`,
    );
  }
  return opts;
}

export interface TcpListenerOptions {
  readonly tls?: SecureContextOptions;
  readonly handshakeTimeoutMs: number;
}

// A TCP listener whose connections (after the TLS handshake, when there is TLS) go to
// the HTTP server like its own. A client without a certificate that chains to the CA
// never gets past the handshake: no byte of HTTP is read from it.
export async function listenTcp(
  server: HttpServer,
  addr: ListenAddress & { kind: 'tcp' },
  o: TcpListenerOptions,
  log: Logger,
): Promise<NetServer> {
  const where = formatAddress(addr);
  const prepare = (s: Socket | TLSSocket) => {
    s.setNoDelay(true);
    // Finds peers that vanished under a long-lived stream (events, logs -f, attach).
    s.setKeepAlive(true, 60_000);
  };
  let tcp: NetServer;
  if (o.tls) {
    // Half-open like the HTTP server's own connections: a client that ends its stdin on
    // an attach or exec still reads the output that follows.
    const t = createTlsServer({
      ...o.tls,
      allowHalfOpen: true,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: o.handshakeTimeoutMs,
    });
    t.on('secureConnection', (s: TLSSocket) => {
      prepare(s);
      const peer = s.getPeerCertificate();
      log.debug(
        { listener: where, remote: s.remoteAddress, client: peer.subject?.CN },
        'API client connected',
      );
      server.emit('connection', s);
    });
    t.on('tlsClientError', (e: Error, s: TLSSocket) => {
      log.info(
        { listener: where, remote: s.remoteAddress, err: e.message },
        'API client refused at the TLS handshake',
      );
      s.destroy();
    });
    tcp = t;
  } else {
    tcp = createNetServer({ allowHalfOpen: true }, (s) => {
      prepare(s);
      server.emit('connection', s);
    });
  }
  const up = listening(tcp);
  tcp.listen({ host: addr.host, port: addr.port });
  try {
    await up;
  } catch (e) {
    throw bad(
      'host',
      `cannot listen on ${where}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`,
    );
  }
  if (!o.tls)
    log.warn(
      { listener: where },
      `INSECURE: the API is served on ${where} WITHOUT TLS or authentication (--insecure-tcp): anyone who can reach it controls this host as root`,
    );
  else log.info({ listener: where }, 'API served over mutual TLS');
  return tcp;
}
