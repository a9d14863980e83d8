// Platforms as docker and containerd spell them (`linux/arm64`, `linux/arm/v7`, `arm64`),
// normalised so that aliases compare equal (aarch64 is arm64, armhf is arm/v7, arm64/v8
// is plain arm64), and the choice of one manifest from an image index for a host.
import { arch as osArch, endianness } from 'node:os';
import { invalid } from '../util/errors.ts';

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

const KNOWN_OS = new Set([
  'aix',
  'android',
  'darwin',
  'dragonfly',
  'freebsd',
  'hurd',
  'illumos',
  'ios',
  'js',
  'linux',
  'nacl',
  'netbsd',
  'openbsd',
  'plan9',
  'solaris',
  'wasip1',
  'windows',
  'zos',
]);

const KNOWN_ARCH = new Set([
  '386',
  'amd64',
  'amd64p32',
  'arm',
  'armbe',
  'arm64',
  'arm64be',
  'loong64',
  'mips',
  'mipsle',
  'mips64',
  'mips64le',
  'ppc',
  'ppc64',
  'ppc64le',
  'riscv',
  'riscv64',
  's390',
  's390x',
  'sparc',
  'sparc64',
  'wasm',
  // aliases that normalise to the names above
  'x86_64',
  'x86-64',
  'aarch64',
  'armhf',
  'armel',
  'i386',
]);

function make(os: string, architecture: string, variant: string): Platform {
  return variant === '' ? { os, architecture } : { os, architecture, variant };
}

// containerd's normalisation, so an index written by any tool compares equal to what a
// user types.
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (arch) {
    case 'i386':
      arch = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  return make(os, arch, variant);
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

// The platform this process runs on, in OCI terms.
export function hostPlatform(): Platform {
  // A string: node's Architecture type lists fewer names than node runs on.
  const a: string = osArch();
  switch (a) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'arm': {
      const v = (process.config.variables as Record<string, unknown>)['arm_version'];
      return normalizePlatform({
        os: 'linux',
        architecture: 'arm',
        variant: typeof v === 'string' || typeof v === 'number' ? String(v) : '',
      });
    }
    case 'ppc64':
      return { os: 'linux', architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    case 'mipsel':
      return { os: 'linux', architecture: 'mipsle' };
    case 'mips64el':
      return { os: 'linux', architecture: 'mips64le' };
    default:
      // arm64, s390x, riscv64, loong64 and the rest share Go's names.
      return { os: 'linux', architecture: a };
  }
}

const COMPONENT = /^[A-Za-z0-9_.-]+$/;

// `--platform`: os[/arch[/variant]], or a lone architecture (the host's os) or a lone os
// (the host's architecture), as containerd reads it.
export function parsePlatform(s: string, field = 'platform'): Platform {
  const parts = s.split('/');
  if (parts.length > 3 || !parts.every((p) => COMPONENT.test(p))) {
    throw invalid(field, `"${s}" is not a platform (want os/arch[/variant], e.g. linux/arm64)`);
  }
  const host = hostPlatform();
  const [a = '', b, c] = parts.map((p) => p.toLowerCase());
  if (b === undefined) {
    if (KNOWN_OS.has(a) || a === 'macos') return normalizePlatform({ ...host, os: a });
    if (KNOWN_ARCH.has(a)) return normalizePlatform({ os: host.os, architecture: a });
    throw invalid(field, `"${s}" is neither a known operating system nor an architecture`);
  }
  if (!KNOWN_OS.has(a) && a !== 'macos') {
    throw invalid(field, `"${a}" is not a known operating system`);
  }
  if (!KNOWN_ARCH.has(b)) throw invalid(field, `"${b}" is not a known architecture`);
  return normalizePlatform(make(a, b, c ?? ''));
}

// The variants a platform can run, best first; '' is the architecture's baseline (an
// index entry without a variant).
function compatibleVariants(p: Platform): string[] {
  const v = p.variant ?? '';
  if (p.architecture === 'arm') {
    const order = ['v8', 'v7', 'v6', 'v5'];
    const i = order.indexOf(v);
    return i < 0 ? [v, ''] : [...order.slice(i), ''];
  }
  if (p.architecture === 'amd64') {
    const order = ['v4', 'v3', 'v2', ''];
    const i = order.indexOf(v);
    return i < 0 ? [v, ''] : order.slice(i);
  }
  return v === '' ? [''] : [v, ''];
}

// How well an entry suits a wanted platform: 0 is an exact match, higher is a worse
// fallback, undefined is unusable.
export function platformRank(want: Platform, have: Platform): number | undefined {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return undefined;
  const i = compatibleVariants(w).indexOf(h.variant ?? '');
  return i < 0 ? undefined : i;
}

// The best entry for `want`, the first of equals in index order, as docker picks.
export function selectPlatform<T extends { readonly platform?: Platform | undefined }>(
  entries: readonly T[],
  want: Platform,
): T | undefined {
  let best: T | undefined;
  let bestRank = Infinity;
  for (const e of entries) {
    if (e.platform === undefined) continue;
    const r = platformRank(want, e.platform);
    if (r !== undefined && r < bestRank) {
      best = e;
      bestRank = r;
    }
  }
  return best;
}
