// `berth volume create|ls|inspect|rm|prune`: docker's verbs, flags and output, with a
// hard size (`--size`) that docker's local driver does not have.
import type { Command } from 'commander';
import type { BerthClient } from '../client/index.ts';
import type { VolumeSummary } from '../types/volume.ts';
import { errorMessage, invalid } from '../util/errors.ts';
import { parseSize } from '../util/size.ts';
import { formatItems, inspectEach, table } from './output.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

export function parseLabels(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    const k = i < 0 ? a : a.slice(0, i);
    if (!k) throw invalid('label', `"${a}" has no key`);
    out[k] = i < 0 ? '' : a.slice(i + 1);
  }
  return out;
}

// docker's units.HumanSize: decimal units, four significant digits.
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

// The fields of `docker volume ls --format`, and berth's SizeBytes.
export function volumeRow(v: VolumeSummary): Record<string, unknown> {
  return {
    Name: v.Name,
    Driver: v.Driver,
    Scope: v.Scope,
    Mountpoint: v.Mountpoint,
    CreatedAt: v.CreatedAt,
    Labels: Object.entries(v.Labels)
      .map(([k, x]) => `${k}=${x}`)
      .join(','),
    Links: 'N/A',
    Size: v.SizeBytes > 0 ? humanSize(v.SizeBytes) : 'N/A',
    SizeBytes: v.SizeBytes,
  };
}

// Reads one line of stdin; end of input answers no.
function readLine(): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (s: string) => {
      process.stdin.off('data', onData);
      process.stdin.off('end', onEnd);
      process.stdin.destroy();
      resolve(s);
    };
    const onData = (b: Buffer) => {
      buf += b.toString();
      const i = buf.indexOf('\n');
      if (i >= 0) done(buf.slice(0, i));
    };
    const onEnd = () => done(buf);
    process.stdin.on('data', onData);
    process.stdin.once('end', onEnd);
  });
}

export function addVolumeCommands(
  program: Command,
  client: () => BerthClient,
  out: (s: string) => void,
  exitWith: (code: number) => Error,
): void {
  // docker's multi-volume verbs: go on past a failure, report each, fail at the end.
  const forEach = async (names: string[], fn: (n: string) => Promise<void>) => {
    let failed: unknown;
    for (const n of names) {
      try {
        await fn(n);
      } catch (e) {
        failed = e;
        if (names.length > 1) process.stderr.write(`Error: ${errorMessage(e)}\n`);
      }
    }
    if (failed !== undefined) throw names.length > 1 ? exitWith(1) : failed;
  };

  const volume = program.command('volume').description('Manage volumes');

  volume
    .command('create')
    .description('Create a volume; with --size, one that ends in ENOSPC at that size')
    .option('--size <size>', 'hard size, like 512m or 10g (at least 1m); default: unbounded')
    .option('-l, --label <key=value>', 'a label (repeatable)', collect, [])
    .argument('<name>')
    .addHelpText(
      'after',
      `
A sized volume is an ext4 filesystem in a sparse file under the data root, so it holds
its size on any host filesystem and takes host space only as it fills.

  berth volume create --size 1g pgdata`,
    )
    .action(async (name: string, f: { size?: string; label: string[] }) => {
      const sizeBytes = f.size === undefined ? undefined : parseSize(f.size, 'size');
      const v = await client().createVolume({
        name,
        ...(sizeBytes === undefined ? {} : { sizeBytes }),
        labels: parseLabels(f.label),
      });
      out(`${v.Name}\n`);
    });

  volume
    .command('ls')
    .alias('list')
    .description('List volumes')
    .option('-q, --quiet', 'only names')
    .option('--format <format>', 'table, json, or a Go template')
    .action(async (f: { quiet?: boolean; format?: string }) => {
      const { Volumes: list } = await client().listVolumes();
      if (f.quiet) {
        out(list.map((v) => `${v.Name}\n`).join(''));
        return;
      }
      out(
        formatItems(list.map(volumeRow), f.format ?? '', () =>
          table([['DRIVER', 'VOLUME NAME'], ...list.map((v) => [v.Driver, v.Name])]),
        ),
      );
    });

  volume
    .command('inspect')
    .description('Show volumes in detail')
    .option('-f, --format <template>', "Go template, as docker's")
    .argument('<name...>')
    .action((names: string[], f: { format?: string }) =>
      inspectEach(names, (n) => client().inspectVolume(n), f.format, out, exitWith),
    );

  volume
    .command('rm')
    .alias('remove')
    .description('Remove volumes (never one a container uses)')
    .option('-f, --force', 'no error for a volume that does not exist')
    .argument('<name...>')
    .action(async (names: string[], f: { force?: boolean }) => {
      await forEach(names, async (n) => {
        await client().removeVolume(n, !!f.force);
        out(`${n}\n`);
      });
    });

  volume
    .command('prune')
    .description('Remove all volumes no container uses')
    .option('-f, --force', 'do not ask for confirmation')
    .action(async (f: { force?: boolean }) => {
      if (!f.force) {
        out(
          'WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ',
        );
        if (!/^y(es)?$/i.test((await readLine()).trim())) return;
      }
      const r = await client().pruneVolumes();
      if (r.VolumesDeleted.length > 0)
        out(`Deleted Volumes:\n${r.VolumesDeleted.map((n) => `${n}\n`).join('')}\n`);
      out(`Total reclaimed space: ${humanSize(r.SpaceReclaimed)}\n`);
    });
}
