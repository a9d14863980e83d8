// `berth events`: the durable journal, read or followed. Every event carries its sequence
// number; `--since SEQ` with the last one seen resumes exactly where a reader stopped.
import type { Command } from 'commander';
import type { BerthClient } from '../client/index.ts';
import { BerthError, ERROR_CODES, invalid, isBerthError, type ErrorCode } from '../util/errors.ts';
import { parseTimeArg } from '../util/time.ts';
import { formatItems } from './output.ts';

interface EventLine {
  seq: number;
  time: string;
  timeNano: string;
  type: string;
  action: string;
  actorId: string;
  attributes: Record<string, string>;
}

// Sequence numbers stay far below the Unix times of anything berth has recorded (1e9 is
// 2001), so a plain integer can mean either without a separate flag.
const SEQ_BELOW = 1e9;

// A position in the journal: a sequence number, or a time sent to berthd in RFC 3339.
export function positionArg(
  v: string,
  field: string,
  now = Date.now(),
): { seq: number } | { time: string } {
  const t = v.trim();
  if (/^\d+$/.test(t) && Number(t) < SEQ_BELOW) return { seq: Number(t) };
  const time = parseTimeArg(t, now);
  if (time === undefined)
    throw invalid(
      field,
      `"${v}" is not a sequence number, a time (RFC 3339 or Unix seconds), or a duration like 10m`,
    );
  return { time };
}

export function filtersArg(args: readonly string[]): Record<string, string[]> | undefined {
  if (args.length === 0) return undefined;
  const f: Record<string, string[]> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i <= 0) throw invalid('filter', `"${a}" is not KEY=VALUE`);
    (f[a.slice(0, i)] ??= []).push(a.slice(i + 1));
  }
  return f;
}

// Templates get docker's field names (.Type, .Action, .Actor.ID, .Actor.Attributes.name,
// .Time, .TimeNano) besides berth's own (.seq, .time, ...).
function templateView(e: EventLine): Record<string, unknown> {
  return {
    ...e,
    Seq: e.seq,
    Type: e.type,
    Action: e.action,
    Actor: { ID: e.actorId, Attributes: e.attributes },
    Scope: 'local',
    Time: Math.floor(Date.parse(e.time) / 1000),
    TimeNano: e.timeNano,
  };
}

function defaultLine(e: EventLine): string {
  const attrs = Object.entries(e.attributes)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  return `${e.time} ${e.seq} ${e.type} ${e.action} ${e.actorId} (${attrs})\n`;
}

const collect = (v: string, prev: string[]) => [...prev, v];

interface StreamError {
  code: string;
  message: string;
}

// berthd ends a stream with an error line when retention overtakes a slow reader.
function streamError(e: StreamError): BerthError {
  const code = e.code in ERROR_CODES ? (e.code as ErrorCode) : 'INTERNAL';
  return new BerthError(code, e.message);
}

export function addEventsCommand(
  program: Command,
  client: () => BerthClient,
  out: (s: string) => void,
): void {
  program
    .command('events')
    .description('Show events from the durable journal')
    .option('--since <seq|time>', 'events after this sequence number, or from this time')
    .option('--until <seq|time>', 'events up to this sequence number or time')
    .option(
      '--filter <key=value>',
      'type, container, event, image, label, daemon, volume (repeatable)',
      collect,
      [],
    )
    .option('-f, --follow', 'keep streaming new events (until --until, if given)')
    .option('--format <format>', 'json (one API object a line), or a Go template')
    .addHelpText(
      'after',
      `
A position is a sequence number (a plain integer below 1000000000), or a time: Unix
seconds, RFC 3339 (2024-05-01T10:00:00Z), or a duration before now (10m, 1h30m).
Each event shows its sequence number; --since SEQ with the last one seen resumes with
nothing missed and nothing repeated, across berthd restarts. Filters of one key are ORed,
of different keys ANDed; label takes key or key=value.

  berth events --since 10m --filter type=container --filter event=oom
  berth events -f --since 4211 --format '{{.Seq}} {{.Action}} {{.Actor.Attributes.name}}'`,
    )
    .action(
      async (f: {
        since?: string;
        until?: string;
        filter: string[];
        follow?: boolean;
        format?: string;
      }) => {
        const since = f.since === undefined ? undefined : positionArg(f.since, 'since');
        const until = f.until === undefined ? undefined : positionArg(f.until, 'until');
        const filters = filtersArg(f.filter);
        const query = {
          since: since && 'seq' in since ? since.seq : undefined,
          sinceTime: since && 'time' in since ? since.time : undefined,
          until: until && 'seq' in until ? until.seq : undefined,
          untilTime: until && 'time' in until ? until.time : undefined,
          filters: filters && JSON.stringify(filters),
          follow: !!f.follow,
        };
        const format = f.format ?? '';
        const print = (line: string, e: EventLine) => {
          if (format === 'json') out(`${line}\n`);
          else if (format) out(formatItems([templateView(e)], format, () => ''));
          else out(defaultLine(e));
        };
        // A template error is the user's, and should stop the command before any stream.
        if (format && format !== 'json') formatItems([], format, () => '');

        const res = await client().stream('GET', '/v1/events', query);
        let buf = '';
        let last: number | undefined;
        try {
          for await (const chunk of res) {
            buf += (chunk as Buffer).toString();
            let i: number;
            while ((i = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, i);
              buf = buf.slice(i + 1);
              if (!line) continue;
              const e = JSON.parse(line) as EventLine & { error?: StreamError };
              if (e.error) throw streamError(e.error);
              last = e.seq;
              print(line, e);
            }
          }
        } catch (e) {
          if (isBerthError(e)) throw e;
          // berthd went away mid-stream (a restart): say where to pick up.
          throw new BerthError(
            'DAEMON_UNAVAILABLE',
            last === undefined
              ? 'The event stream was cut before any event (is berthd running?)'
              : `The event stream was cut after seq ${last}; resume with --since ${last}`,
          );
        }
      },
    );
}
