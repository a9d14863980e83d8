// A streaming tar reader for image layers. node-tar's parser is not used because it drops
// PAX xattr records and decodes PAX bodies as text, so a binary value such as
// security.capability could not survive it. Field handling follows Go's archive/tar, which
// Docker and containerd unpack with, so that a layer means the same thing here as there.
// Names are kept as latin1 strings: one char per byte, so any byte sequence round-trips to
// the filesystem exactly (Buffer.from(name, 'latin1')).
import { BerthError } from '../util/errors.ts';

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarEntry {
  readonly name: string;
  readonly linkname: string;
  readonly type: EntryType;
  // Body bytes that follow the header; 0 for types that never carry a body.
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  // Seconds since the epoch, fractional when a PAX record gave nanoseconds.
  readonly mtime: number;
  readonly atime: number | undefined;
  readonly devmajor: number;
  readonly devminor: number;
  // SCHILY.xattr.* records: name (latin1) and raw value.
  readonly xattrs: readonly (readonly [string, Buffer])[];
}

export interface EntrySink {
  data(chunk: Buffer): Promise<void> | void;
  end(): Promise<void> | void;
}

export interface TarHandler {
  // Returns where the body goes, or undefined to skip it.
  entry(e: TarEntry): Promise<EntrySink | undefined>;
}

const BLOCK = 512;
// Go's limit for PAX and GNU long-name bodies: those are held in memory.
const MAX_META = 1 << 20;

const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);
const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

function bad(message: string, offset: number): BerthError {
  return new BerthError('IMAGE_INVALID', `Layer tar: ${message} (at byte ${offset})`);
}

function cstring(b: Buffer, start: number, end: number): string {
  const nul = b.indexOf(0, start);
  return b.toString('latin1', start, nul >= 0 && nul < end ? nul : end);
}

// Octal with space/NUL padding, or GNU base-256 when the high bit is set. Undefined means
// the field is malformed.
function numeric(b: Buffer, start: number, end: number): number | undefined {
  const first = b[start] ?? 0;
  if (first & 0x80) {
    const negative = (first & 0x40) !== 0;
    let x = 0n;
    for (let i = start; i < end; i++) {
      let c = b[i] ?? 0;
      if (negative) c ^= 0xff;
      if (i === start) c &= 0x7f;
      x = (x << 8n) | BigInt(c);
    }
    if (negative) x = -x - 1n;
    if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < BigInt(Number.MIN_SAFE_INTEGER))
      return undefined;
    return Number(x);
  }
  let s = b.toString('latin1', start, end);
  s = s.replace(/^[ \0]+|[ \0]+$/g, '');
  const nul = s.indexOf('\0');
  if (nul >= 0) s = s.slice(0, nul);
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return undefined;
  const n = parseInt(s, 8);
  return Number.isSafeInteger(n) ? n : undefined;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

function checksumOk(b: Buffer): boolean {
  const want = numeric(b, 148, 156);
  if (want === undefined || (b[148] ?? 0) & 0x80) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : (b[i] ?? 0);
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return want === unsigned || want === signed;
}

interface Pax {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  atime?: number;
  xattrs: [string, Buffer][];
}

const DECIMAL = /^[0-9]+$/;
const PAX_TIME = /^-?[0-9]+(\.[0-9]*)?$/;

function parsePax(body: Buffer, into: Pax, offset: number): void {
  let pos = 0;
  while (pos < body.length) {
    const sp = body.indexOf(0x20, pos);
    const lenStr = sp < 0 ? '' : body.toString('latin1', pos, sp);
    const len = DECIMAL.test(lenStr) ? parseInt(lenStr, 10) : NaN;
    if (!(len >= 5) || pos + len > body.length || body[pos + len - 1] !== 0x0a) {
      throw bad('malformed PAX record', offset);
    }
    const eq = body.indexOf(0x3d, sp + 1);
    const end = pos + len - 1;
    if (eq < 0 || eq >= end || eq === sp + 1) throw bad('malformed PAX record', offset);
    const key = body.toString('latin1', sp + 1, eq);
    const value = body.subarray(eq + 1, end);
    pos += len;
    if (key.includes('\0')) throw bad('PAX record key has a NUL byte', offset);
    const text = (): string => {
      const s = value.toString('latin1');
      if (s.includes('\0')) throw bad(`PAX record ${key} has a NUL byte`, offset);
      return s;
    };
    const int = (): number => {
      const s = text();
      const n = parseInt(s, 10);
      if (!DECIMAL.test(s) || !Number.isSafeInteger(n)) throw bad(`bad PAX ${key}: ${s}`, offset);
      return n;
    };
    const time = (): number => {
      const s = text();
      if (!PAX_TIME.test(s)) throw bad(`bad PAX ${key}: ${s}`, offset);
      return Number(s);
    };
    if (key.startsWith('SCHILY.xattr.')) {
      into.xattrs.push([key.slice('SCHILY.xattr.'.length), Buffer.from(value)]);
    } else if (key.startsWith('GNU.sparse.')) {
      throw bad('sparse files are not supported', offset);
    } else {
      switch (key) {
        case 'path':
          into.path = text();
          break;
        case 'linkpath':
          into.linkpath = text();
          break;
        case 'size':
          into.size = int();
          break;
        case 'uid':
          into.uid = int();
          break;
        case 'gid':
          into.gid = int();
          break;
        case 'mtime':
          into.mtime = time();
          break;
        case 'atime':
          into.atime = time();
          break;
        // uname/gname are ignored: ownership is numeric, as in Docker.
      }
    }
  }
}

type State = 'header' | 'body' | 'meta' | 'pad' | 'done';

export class TarReader {
  readonly #handler: TarHandler;
  #state: State = 'header';
  readonly #block = Buffer.alloc(BLOCK);
  #fill = 0;
  #offset = 0; // bytes consumed, for messages
  #headerOffset = 0;
  #remaining = 0;
  #padding = 0;
  #sink: EntrySink | undefined;
  #metaType = '';
  #meta: Buffer[] = [];
  #pax: Pax | undefined;
  #longName: string | undefined;
  #longLink: string | undefined;
  #zeroBlocks = 0;

  constructor(handler: TarHandler) {
    this.#handler = handler;
  }

  async write(chunk: Buffer): Promise<void> {
    let pos = 0;
    while (pos < chunk.length) {
      const avail = chunk.length - pos;
      switch (this.#state) {
        case 'header': {
          const n = Math.min(BLOCK - this.#fill, avail);
          chunk.copy(this.#block, this.#fill, pos, pos + n);
          this.#fill += n;
          pos += n;
          this.#offset += n;
          if (this.#fill === BLOCK) {
            this.#fill = 0;
            this.#headerOffset = this.#offset - BLOCK;
            await this.#header();
          }
          break;
        }
        case 'body': {
          const n = Math.min(this.#remaining, avail);
          const sink = this.#sink;
          if (sink) await sink.data(chunk.subarray(pos, pos + n));
          pos += n;
          this.#offset += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#sink = undefined;
            if (sink) await sink.end();
            this.#state = this.#padding > 0 ? 'pad' : 'header';
          }
          break;
        }
        case 'meta': {
          const n = Math.min(this.#remaining, avail);
          this.#meta.push(chunk.subarray(pos, pos + n));
          pos += n;
          this.#offset += n;
          this.#remaining -= n;
          if (this.#remaining === 0) {
            this.#endMeta();
            this.#state = this.#padding > 0 ? 'pad' : 'header';
          }
          break;
        }
        case 'pad': {
          const n = Math.min(this.#padding, avail);
          pos += n;
          this.#offset += n;
          this.#padding -= n;
          if (this.#padding === 0) this.#state = 'header';
          break;
        }
        case 'done':
          // Anything after the end-of-archive marker is ignored, as by Go's reader (it
          // still counts toward the diffID, which the caller hashes).
          this.#offset += avail;
          return;
      }
    }
  }

  // Called at the end of the stream. An archive may end at a block boundary without its
  // end-of-archive marker (Go accepts that too); anything else is a truncation.
  end(): void {
    if (this.#state === 'done') return;
    if (this.#state !== 'header' || this.#fill !== 0) {
      throw bad('archive is truncated', this.#offset);
    }
    if (this.#pax || this.#longName !== undefined || this.#longLink !== undefined) {
      throw bad('archive ends after an extended header', this.#offset);
    }
  }

  async #header(): Promise<void> {
    const b = this.#block;
    const at = this.#headerOffset;
    if (isZero(b)) {
      this.#zeroBlocks++;
      if (this.#zeroBlocks === 2) this.#state = 'done';
      return;
    }
    if (this.#zeroBlocks > 0) throw bad('header after a zero block', at);
    if (!checksumOk(b)) throw bad('header checksum mismatch (corrupt or not a tar)', at);

    const magic = b.toString('latin1', 257, 263);
    const version = b.toString('latin1', 263, 265);
    const ustar = magic === 'ustar\0';
    const star = ustar && b.toString('latin1', 508, 512) === 'tar\0';
    const gnu = magic === 'ustar ' && version === ' \0';
    const typeflag = b.toString('latin1', 156, 157);

    const size = numeric(b, 124, 136);
    if (size === undefined || size < 0) throw bad('bad size field', at);

    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META) throw bad(`extended header of ${size} bytes is too large`, at);
      this.#metaType = typeflag;
      this.#meta = [];
      this.#remaining = size;
      this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
      if (size === 0) {
        this.#endMeta();
        this.#state = this.#padding > 0 ? 'pad' : 'header';
      } else {
        this.#state = 'meta';
      }
      return;
    }

    let name = cstring(b, 0, 100);
    if (ustar) {
      const prefix = cstring(b, 345, star ? 476 : 500);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    let linkname = cstring(b, 157, 257);
    const pax = this.#pax;
    const longName = this.#longName;
    const longLink = this.#longLink;
    this.#pax = undefined;
    this.#longName = undefined;
    this.#longLink = undefined;
    if (pax?.path !== undefined) name = pax.path;
    if (pax?.linkpath !== undefined) linkname = pax.linkpath;
    if (longName !== undefined) name = longName;
    if (longLink !== undefined) linkname = longLink;

    let type = TYPES[typeflag];
    if (typeflag === '\0' || typeflag === '') type = name.endsWith('/') ? 'dir' : 'file';
    if (type === undefined) {
      const what = typeflag === 'S' ? 'GNU sparse file' : `type ${JSON.stringify(typeflag)}`;
      throw bad(`unsupported entry ${what} for ${JSON.stringify(name)}`, at);
    }

    const mode = numeric(b, 100, 108);
    const uid = pax?.uid ?? numeric(b, 108, 116);
    const gid = pax?.gid ?? numeric(b, 116, 124);
    const mtime = pax?.mtime ?? numeric(b, 136, 148);
    if (mode === undefined || uid === undefined || gid === undefined || mtime === undefined) {
      throw bad(`malformed numeric field in the header of ${JSON.stringify(name)}`, at);
    }
    let devmajor = 0;
    let devminor = 0;
    if (ustar || gnu) {
      const maj = numeric(b, 329, 337);
      const min = numeric(b, 337, 345);
      if (type === 'char' || type === 'block') {
        if (maj === undefined || min === undefined) {
          throw bad(`malformed device number for ${JSON.stringify(name)}`, at);
        }
        devmajor = maj;
        devminor = min;
      }
    }
    let atime = pax?.atime;
    if (atime === undefined && gnu && b[345] !== 0) atime = numeric(b, 345, 357);
    if (atime === undefined && star && b[476] !== 0) atime = numeric(b, 476, 488);

    const bodySize = HEADER_ONLY.has(typeflag) ? 0 : (pax?.size ?? size);
    const entry: TarEntry = {
      name,
      linkname,
      type,
      size: bodySize,
      mode,
      uid,
      gid,
      mtime,
      atime,
      devmajor,
      devminor,
      xattrs: pax?.xattrs ?? [],
    };
    const sink = await this.#handler.entry(entry);
    this.#remaining = bodySize;
    this.#padding = (BLOCK - (bodySize % BLOCK)) % BLOCK;
    if (bodySize === 0) {
      if (sink) await sink.end();
      this.#state = this.#padding > 0 ? 'pad' : 'header';
    } else {
      this.#sink = sink;
      this.#state = 'body';
    }
  }

  #endMeta(): void {
    const body = Buffer.concat(this.#meta);
    this.#meta = [];
    const at = this.#headerOffset;
    switch (this.#metaType) {
      case 'x': {
        // Consecutive PAX headers merge, later records winning, as in Go.
        const pax = this.#pax ?? { xattrs: [] };
        parsePax(body, pax, at);
        this.#pax = pax;
        break;
      }
      case 'g':
        // Global headers are ignored, as Docker and containerd do (git archive writes one).
        this.#pax = undefined;
        this.#longName = undefined;
        this.#longLink = undefined;
        break;
      case 'L':
      case 'K': {
        let s = body.toString('latin1');
        s = s.replace(/\0+$/, '');
        if (s.includes('\0')) throw bad('GNU long name has a NUL byte', at);
        if (this.#metaType === 'L') this.#longName = s;
        else this.#longLink = s;
        break;
      }
    }
  }
}
