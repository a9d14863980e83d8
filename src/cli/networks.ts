// `berth network create|ls|inspect|rm`: docker's verbs, flags and output for bridge
// networks.
import type { Command } from 'commander';
import type { BerthClient } from '../client/index.ts';
import type { NetworkInspect } from '../types/network.ts';
import { errorMessage } from '../util/errors.ts';
import { formatItems, inspectEach, table } from './output.ts';
import { parseLabels } from './volumes.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

// The fields of `docker network ls --format`, and berth's Subnet and Gateway.
export function networkRow(n: NetworkInspect): Record<string, unknown> {
  const cfg = n.IPAM.Config[0];
  return {
    ID: n.Id.slice(0, 12),
    Name: n.Name,
    Driver: n.Driver,
    Scope: n.Scope,
    IPv6: String(n.EnableIPv6),
    Internal: String(n.Internal),
    Labels: Object.entries(n.Labels)
      .map(([k, x]) => `${k}=${x}`)
      .join(','),
    CreatedAt: n.Created,
    Subnet: cfg?.Subnet ?? '',
    Gateway: cfg?.Gateway ?? '',
  };
}

export function addNetworkCommands(
  program: Command,
  client: () => BerthClient,
  out: (s: string) => void,
  exitWith: (code: number) => Error,
): void {
  const network = program.command('network').description('Manage networks');

  network
    .command('create')
    .description('Create a bridge network')
    .option('--subnet <cidr>', 'IPv4 subnet, like 10.214.7.0/24 (default: a free /24)')
    .option('--gateway <ip>', "the bridge's address in the subnet (default: its first)")
    .option('-l, --label <key=value>', 'a label (repeatable)', collect, [])
    .argument('<name>')
    .addHelpText(
      'after',
      `
Containers on one network reach each other; published ports reach them from the host.

  berth network create --subnet 10.214.7.0/24 backend`,
    )
    .action(async (name: string, f: { subnet?: string; gateway?: string; label: string[] }) => {
      const n = await client().createNetwork({
        name,
        ...(f.subnet === undefined ? {} : { subnet: f.subnet }),
        ...(f.gateway === undefined ? {} : { gateway: f.gateway }),
        labels: parseLabels(f.label),
      });
      out(`${n.Id}\n`);
    });

  network
    .command('ls')
    .alias('list')
    .description('List networks')
    .option('-q, --quiet', 'only ids')
    .option('--format <format>', 'table, json, or a Go template')
    .action(async (f: { quiet?: boolean; format?: string }) => {
      const list = await client().listNetworks();
      if (f.quiet) {
        out(list.map((n) => `${n.Id.slice(0, 12)}\n`).join(''));
        return;
      }
      const rows = list.map(networkRow);
      out(
        formatItems(rows, f.format ?? '', () =>
          table([
            ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE', 'SUBNET'],
            ...rows.map((r) =>
              [r['ID'], r['Name'], r['Driver'], r['Scope'], r['Subnet']].map(String),
            ),
          ]),
        ),
      );
    });

  network
    .command('inspect')
    .description('Show networks in detail')
    .option('-f, --format <template>', "Go template, as docker's")
    .argument('<network...>')
    .action((names: string[], f: { format?: string }) =>
      inspectEach(names, (n) => client().inspectNetwork(n), f.format, out, exitWith),
    );

  network
    .command('rm')
    .alias('remove')
    .description('Remove networks (never one a container uses, nor bridge)')
    .argument('<network...>')
    .action(async (names: string[]) => {
      // docker's multi-network verbs: go on past a failure, report each, fail at the end.
      let failed: unknown;
      for (const n of names) {
        try {
          await client().removeNetwork(n);
          out(`${n}\n`);
        } catch (e) {
          failed = e;
          if (names.length > 1) process.stderr.write(`Error: ${errorMessage(e)}\n`);
        }
      }
      if (failed !== undefined) throw names.length > 1 ? exitWith(1) : failed;
    });
}
