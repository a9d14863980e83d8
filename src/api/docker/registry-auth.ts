// Docker's X-Registry-Auth header: base64url of a JSON AuthConfig ({username, password,
// serveraddress}, or `auth` as base64 of user:password). The docker CLI sends it with every
// pull and push, `{}` when it has no credentials for the registry.
import type { FastifyRequest } from 'fastify';
import type { OperationCredentials } from '../../engine/image-transfer.ts';
import { BerthError } from '../../util/errors.ts';

const bad = (why: string) =>
  new BerthError('INVALID_ARGUMENT', `Invalid X-Registry-Auth header: ${why}`, {
    field: 'X-Registry-Auth',
  });

export function registryAuth(req: FastifyRequest): OperationCredentials | undefined {
  const h = req.headers['x-registry-auth'];
  const raw = (Array.isArray(h) ? h[0] : h)?.trim();
  if (raw === undefined || raw === '') return undefined;
  if (!/^[A-Za-z0-9+/_-]+=*$/.test(raw)) throw bad('not base64');
  let j: unknown;
  try {
    j = JSON.parse(Buffer.from(raw, 'base64').toString('utf8'));
  } catch {
    throw bad('not base64 of a JSON object');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw bad('not a JSON object');
  const o = j as Record<string, unknown>;
  const str = (k: string): string => {
    const v = o[k];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw bad(`${k} must be a string`);
    return v;
  };
  let username = str('username');
  let password = str('password');
  const auth = str('auth');
  if (username === '' && auth !== '') {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw bad('auth is not base64 of user:password');
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (username === '') {
    if (str('identitytoken') !== '' || str('registrytoken') !== '')
      throw new BerthError(
        'NOT_IMPLEMENTED',
        'Identity and registry tokens in X-Registry-Auth are not supported by berth: send a username and password',
      );
    return undefined;
  }
  const server = str('serveraddress');
  return { username, password, ...(server ? { serverAddress: server } : {}) };
}
