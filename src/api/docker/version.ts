// The Docker API versions berthd speaks: it advertises 1.41 and takes any request path
// versioned from 1.24 to 1.41, or unversioned.
import { BerthError } from '../../util/errors.ts';

export const DOCKER_API_VERSION = '1.41';
export const DOCKER_MIN_API_VERSION = '1.24';

const MAX_MINOR = 41;
const MIN_MINOR = 24;

// /v1.41/containers/json -> /containers/json
export function stripVersion(url: string): string {
  return url.replace(/^\/v1\.\d+(?=\/)/, '');
}

// Docker's refusals, word for word, so a client that did not negotiate learns why.
export function checkApiVersion(url: string): void {
  const m = /^\/v(\d+)\.(\d+)\//.exec(url);
  if (!m) return;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const v = `${m[1]}.${m[2]}`;
  if (major > 1 || (major === 1 && minor > MAX_MINOR))
    throw new BerthError(
      'INVALID_ARGUMENT',
      `client version ${v} is too new. Maximum supported API version is ${DOCKER_API_VERSION}`,
    );
  if (major < 1 || minor < MIN_MINOR)
    throw new BerthError(
      'INVALID_ARGUMENT',
      `client version ${v} is too old. Minimum supported API version is ${DOCKER_MIN_API_VERSION}, please upgrade your client to a newer version`,
    );
}
