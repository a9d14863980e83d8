import { invalid } from '../util/errors.ts';

export interface ImageRef {
  readonly repo: string;
  readonly tag: string;
}

// Docker's repository grammar (lowercase path components, optional registry host with
// port) and tag grammar, for local names as given; parseReference below normalises names
// for registries (docker.io/library/...).
const REPO =
  /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export function parseImageRef(s: string, field = 'image'): ImageRef {
  const slash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  const hasTag = colon > slash;
  const repo = hasTag ? s.slice(0, colon) : s;
  const tag = hasTag ? s.slice(colon + 1) : 'latest';
  if (!REPO.test(repo)) throw invalid(field, `"${s}" is not a valid image name`);
  if (!TAG.test(tag)) throw invalid(field, `"${tag}" is not a valid tag`);
  return { repo, tag };
}

export function formatImageRef(r: ImageRef): string {
  return `${r.repo}:${r.tag}`;
}

// Registry references, normalised as docker does: `busybox` is
// `docker.io/library/busybox:latest`, a first path component with a dot, a colon or that
// is `localhost` names the registry. The grammar follows the distribution project's
// reference package, so whatever docker accepts, berth accepts with the same meaning.
export interface Reference {
  readonly registry: string;
  readonly repository: string;
  // `latest` when neither a tag nor a digest was given; undefined with a digest alone.
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

export const DEFAULT_REGISTRY = 'docker.io';
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const OFFICIAL_PREFIX = 'library/';
// The distribution project's limit on a repository name, registry included.
const NAME_TOTAL_LENGTH_MAX = 255;

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HEX64 = /^[a-f0-9]{64}$/;

// The algorithms berth can verify, with the length of their hex encoding.
const DIGEST_HEX_LENGTH: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };

export interface ParsedDigest {
  readonly algorithm: 'sha256' | 'sha384' | 'sha512';
  readonly hex: string;
}

export function parseDigest(s: string, field = 'digest'): ParsedDigest {
  const m = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/.exec(s);
  if (!m) throw invalid(field, `"${s}" is not a valid digest`);
  const algorithm = m[1] ?? '';
  const hex = m[2] ?? '';
  const len = DIGEST_HEX_LENGTH[algorithm];
  if (len === undefined) throw invalid(field, `digest algorithm "${algorithm}" is not supported`);
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) {
    throw invalid(field, `"${s}" is not a valid ${algorithm} digest`);
  }
  return { algorithm: algorithm as ParsedDigest['algorithm'], hex };
}

export function isDigest(s: string): boolean {
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

export function parseReference(s: string, field = 'image'): Reference {
  if (HEX64.test(s)) {
    throw invalid(field, `"${s}" is a 64-character hexadecimal string, which names an image id`);
  }
  const at = s.indexOf('@');
  let digest: string | undefined;
  let rest = s;
  if (at >= 0) {
    digest = s.slice(at + 1);
    rest = s.slice(0, at);
    parseDigest(digest, field);
  }
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  let tag: string | undefined;
  let name = rest;
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    name = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(field, `"${tag}" is not a valid tag`);
  }

  const first = name.indexOf('/');
  let registry: string;
  let repository: string;
  const head = first < 0 ? '' : name.slice(0, first);
  if (first < 0 || (!/[.:]/.test(head) && head !== 'localhost' && head.toLowerCase() === head)) {
    registry = DEFAULT_REGISTRY;
    repository = name;
  } else {
    registry = head;
    repository = name.slice(first + 1);
    if (!DOMAIN.test(registry)) throw invalid(field, `"${registry}" is not a valid registry host`);
  }
  if (registry === LEGACY_DEFAULT_REGISTRY) registry = DEFAULT_REGISTRY;
  if (repository.toLowerCase() !== repository) {
    throw invalid(field, `repository name "${repository}" must be lowercase`);
  }
  if (repository === '' || !repository.split('/').every((c) => PATH_COMPONENT.test(c))) {
    throw invalid(field, `"${s}" is not a valid image name`);
  }
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) {
    repository = OFFICIAL_PREFIX + repository;
  }
  if (`${registry}/${repository}`.length > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(field, `repository name is longer than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository, tag, digest };
}

// The fully qualified form: docker.io/library/busybox:latest.
export function formatReference(r: Reference): string {
  return `${r.registry}/${r.repository}${r.tag === undefined ? '' : `:${r.tag}`}${
    r.digest === undefined ? '' : `@${r.digest}`
  }`;
}

// The short form docker shows: busybox:latest, user/app:1, host:5000/app:1.
export function familiarReference(r: Reference): string {
  let name = `${r.registry}/${r.repository}`;
  if (r.registry === DEFAULT_REGISTRY) {
    name = r.repository.startsWith(OFFICIAL_PREFIX)
      ? r.repository.slice(OFFICIAL_PREFIX.length)
      : r.repository;
  }
  return `${name}${r.tag === undefined ? '' : `:${r.tag}`}${r.digest === undefined ? '' : `@${r.digest}`}`;
}

// The host (and port) that serves a registry's API: Docker Hub's name is not its host.
export function registryHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? DOCKER_HUB_API_HOST : registry;
}
