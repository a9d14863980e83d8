import { invalid } from '../util/errors.ts';

export interface ImageRef {
  readonly repo: string;
  readonly tag: string;
}

// Docker's repository grammar (lowercase path components, optional registry host with
// port) and tag grammar. Registry normalisation (docker.io/library/...) comes with pulls.
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
