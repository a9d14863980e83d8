// HTTP over an engine's unix socket, for what its CLI does not expose or would slow down:
// berthd's API and /metrics, dockerd's API. Timed from the request to the end of the body.
import { request, type Agent } from 'node:http';

export interface Reply {
  readonly status: number;
  readonly body: string;
  readonly ms: number;
}

export interface RequestOptions {
  // Default GET.
  readonly method?: string;
  // Sent as JSON.
  readonly body?: unknown;
  // A keep-alive agent, or false for a new connection per request (as a scraper makes).
  readonly agent: Agent | false;
  readonly signal?: AbortSignal;
}

export function unixRequest(socketPath: string, path: string, o: RequestOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = o.body === undefined ? undefined : JSON.stringify(o.body);
    const headers: Record<string, string | number> = data
      ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) }
      : {};
    const t0 = process.hrtime.bigint();
    const req = request(
      {
        socketPath,
        path,
        method: o.method ?? 'GET',
        agent: o.agent,
        headers,
        ...(o.signal ? { signal: o.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (b: Buffer) => chunks.push(b));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
            ms: Number(process.hrtime.bigint() - t0) / 1e6,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export function expectStatus(r: Reply, status: number, what: string): Reply {
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
  return r;
}
