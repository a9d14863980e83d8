// berth login / logout: credentials are checked against the registry, then kept by berthd
// (which is what pulls), in <root>/auth.json, mode 0600.
import { normalizeRegistry, type CredentialStore } from '../images/credentials.ts';
import { parsePlatform } from '../images/platform.ts';
import { DEFAULT_REGISTRY, parseReference } from '../images/reference.ts';
import type { RegistryClient } from '../images/registry.ts';
import { invalid } from '../util/errors.ts';

export class RegistryLogin {
  readonly credentials: CredentialStore;
  private readonly client: RegistryClient;

  constructor(credentials: CredentialStore, client: RegistryClient) {
    this.credentials = credentials;
    this.client = client;
  }

  async login(server: string, username: string, password: string): Promise<string> {
    const registry = normalizeRegistry(server || DEFAULT_REGISTRY);
    await this.credentials.login(registry, username, password, this.client);
    return registry;
  }

  // Checks credentials against the registry as login does, and keeps nothing: Docker's
  // `POST /auth`, whose clients send their credentials with each pull and push.
  async check(server: string, username: string, password: string): Promise<string> {
    const registry = normalizeRegistry(server || DEFAULT_REGISTRY);
    if (username === '') throw invalid('username', 'must not be empty');
    if (password === '') throw invalid('password', 'must not be empty');
    await this.client.checkCredentials(registry, { username, password });
    return registry;
  }

  async logout(server: string): Promise<{ registry: string; removed: boolean }> {
    const registry = normalizeRegistry(server || DEFAULT_REGISTRY);
    return { registry, removed: await this.credentials.logout(registry, this.client) };
  }
}

// What a pull request must get right before a progress stream starts.
export function checkPullReference(image: string, platform: string | undefined): void {
  parseReference(image, 'image');
  if (platform !== undefined && platform !== '') parsePlatform(platform);
}
