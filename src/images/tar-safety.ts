// The pure rules of layer unpacking: what an entry's name means inside the layer, and which
// of its xattrs may land on disk. Names are latin1 strings (one char per byte, see
// tar-reader.ts).
import { BerthError } from '../util/errors.ts';

// Linux's NAME_MAX: the kernel would refuse longer components anyway, but with an error
// that does not name the entry.
export const MAX_COMPONENT = 255;

// How an entry name is shown in messages: the bytes read as UTF-8, quoted so that control
// characters and odd bytes are visible.
export function display(name: string): string {
  return JSON.stringify(Buffer.from(name, 'latin1').toString('utf8'));
}

export function refuse(name: string, why: string): BerthError {
  return new BerthError('IMAGE_INVALID', `Layer entry ${display(name)}: ${why}`, {
    entry: Buffer.from(name, 'latin1').toString('utf8'),
  });
}

// The components of an entry's path inside the layer; [] is the layer root. Absolute names
// are made relative, as Docker does. `..` is resolved lexically, never through the
// filesystem, and one that would climb above the root refuses the entry: nothing from here
// on ever sees a `..`, so no later step can leave the layer through one.
export function layerPath(name: string, maxLength: number, what = 'path'): string[] {
  if (name === '') throw refuse(name, `empty ${what}`);
  if (name.includes('\0')) throw refuse(name, `${what} has a NUL byte`);
  if (name.length > maxLength) throw refuse(name, `${what} is longer than ${maxLength} bytes`);
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) throw refuse(name, `${what} leaves the layer`);
      out.pop();
      continue;
    }
    if (c.length > MAX_COMPONENT) {
      throw refuse(name, `${what} has a component longer than ${MAX_COMPONENT} bytes`);
    }
    out.push(c);
  }
  return out;
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
// AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): Docker skips it, so do we.
export const WHITEOUT_META_PREFIX = '.wh..wh.';

export type Whiteout =
  | { readonly kind: 'none' }
  | { readonly kind: 'opaque' }
  | { readonly kind: 'meta' }
  | { readonly kind: 'whiteout'; readonly target: string };

export function whiteoutOf(name: string, base: string): Whiteout {
  if (!base.startsWith(WHITEOUT_PREFIX)) return { kind: 'none' };
  if (base === OPAQUE_MARKER) return { kind: 'opaque' };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') {
    throw refuse(name, 'whiteout names no file');
  }
  return { kind: 'whiteout', target };
}

// The kernel's XATTR_SIZE_MAX.
export const MAX_XATTR_VALUE = 65536;

// Which xattrs from a layer are written. overlay.* in either namespace would let a layer
// forge whiteouts, opaque dirs, redirects or metacopy origins across the stack (the user.
// namespace matters when overlay is mounted with userxattr); security.* other than file
// capabilities are LSM labels the host sets, not the image; system.* other than POSIX ACLs
// are filesystem-specific.
export function xattrAllowed(key: string): boolean {
  if (key.startsWith('trusted.overlay.') || key.startsWith('user.overlay.')) return false;
  for (const ns of ['user.', 'trusted.']) if (key.startsWith(ns)) return key.length > ns.length;
  if (key === 'security.capability') return true;
  return key === 'system.posix_acl_access' || key === 'system.posix_acl_default';
}
