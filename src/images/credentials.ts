// Registry credentials saved by `berth login`: `<dataRoot>/auth.json`, mode 0600, in the
// shape of docker's config.json `auths` ({"auths": {"host:port": {"auth": base64(user:pass)}}})
// so the file reads the same to anyone who knows docker's.
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, invalid } from '../util/errors.ts';
import type { Credentials } from './registry-auth.ts';
import type { RegistryClient } from './registry.ts';
import { DEFAULT_REGISTRY } from './reference.ts';

interface AuthFile {
  auths: Record<string, { auth?: string }>;
}

// How a user may name Docker Hub; all are saved under docker.io.
const HUB_ALIASES = new Set([
  'docker.io',
  'index.docker.io',
  'registry-1.docker.io',
  'https://index.docker.io/v1/',
]);

// `https://host:port/` or `host:port`, as docker login accepts it, to the registry name
// references use.
export function normalizeRegistry(s: string): string {
  const trimmed = s.trim().toLowerCase();
  if (HUB_ALIASES.has(trimmed)) return DEFAULT_REGISTRY;
  let name = trimmed.replace(/^https?:\/\//, '');
  name = name.replace(/\/.*$/, '');
  if (name === '' || !/^[a-z0-9.\-[\]:]+$/.test(name)) {
    throw invalid('registry', `"${s}" is not a registry host`);
  }
  return HUB_ALIASES.has(name) ? DEFAULT_REGISTRY : name;
}

export class CredentialStore {
  readonly file: string;
  // One change at a time, so two logins never lose each other's entry.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(dataRoot: string) {
    this.file = join(dataRoot, 'auth.json');
  }

  async get(registry: string): Promise<Credentials | undefined> {
    const entry = (await this.read()).auths[normalizeRegistry(registry)];
    if (entry?.auth === undefined) return undefined;
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }

  async registries(): Promise<string[]> {
    return Object.keys((await this.read()).auths).sort();
  }

  // A lookup for RegistryClient's `credentials` option.
  lookup(): (registry: string) => Promise<Credentials | undefined> {
    return (registry) => this.get(registry);
  }

  // Checks the credentials against the registry (GET /v2/ with them, through its token
  // server if it has one) and saves them only if it accepts them.
  async login(
    registry: string,
    username: string,
    password: string,
    client: RegistryClient,
    opts: { signal?: AbortSignal } = {},
  ): Promise<void> {
    const name = normalizeRegistry(registry);
    if (username === '') throw invalid('username', 'must not be empty');
    // Basic authentication cannot carry a colon in the user id.
    if (username.includes(':')) throw invalid('username', 'must not contain ":"');
    if (password === '') throw invalid('password', 'must not be empty');
    const creds = { username, password };
    await client.checkCredentials(name, creds, opts);
    await this.update((f) => {
      f.auths[name] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
    });
    client.forget(name);
  }

  // Removes saved credentials; false when there were none.
  async logout(registry: string, client?: RegistryClient): Promise<boolean> {
    const name = normalizeRegistry(registry);
    let had = false;
    await this.update((f) => {
      had = f.auths[name] !== undefined;
      delete f.auths[name];
    });
    client?.forget(name);
    return had;
  }

  private async read(): Promise<AuthFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { auths: {} };
      throw e;
    }
    let j: unknown;
    try {
      j = JSON.parse(text);
    } catch {
      throw new BerthError('INTERNAL', `Credentials file ${this.file} is not valid JSON`);
    }
    const auths =
      typeof j === 'object' && j !== null ? (j as Record<string, unknown>)['auths'] : undefined;
    if (typeof auths !== 'object' || auths === null || Array.isArray(auths)) return { auths: {} };
    const out: AuthFile = { auths: {} };
    for (const [k, v] of Object.entries(auths)) {
      const auth =
        typeof v === 'object' && v !== null ? (v as Record<string, unknown>)['auth'] : undefined;
      if (typeof auth === 'string') out.auths[k] = { auth };
    }
    return out;
  }

  private update(change: (f: AuthFile) => void): Promise<void> {
    const run = this.queue.then(async () => {
      const f = await this.read();
      change(f);
      await this.write(f);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  // Written to a new file created 0600 and renamed over the old, so the secret is never
  // readable by others, not even for a moment, and a crash leaves the old file whole.
  private async write(f: AuthFile): Promise<void> {
    const tmp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(f, null, 2)}\n`);
      await fh.sync();
    } catch (e) {
      await fh.close();
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await fh.close();
    await chmod(tmp, 0o600);
    await rename(tmp, this.file);
  }
}
