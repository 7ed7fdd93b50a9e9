// A TCP proxy in front of one terminal that can throttle what it reads from the
// daemon (a slow-reading terminal: the kernel buffers fill, the daemon's
// socket.write() returns false) while passing the terminal's answers at full
// speed.
import net from 'node:net';

export interface ThrottleProxy {
  port: number;
  /** bytes per second read from the daemon; null = full speed */
  setRate(bytesPerSec: number | null): void;
  /** bytes read from the daemon so far (all connections) */
  readonly bytesFromDaemon: number;
  close(): Promise<void>;
}

export async function startThrottleProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<ThrottleProxy> {
  let rate: number | null = null;
  let bytesFromDaemon = 0;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; apply(): void }>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: targetHost, port: targetPort });
    let timer: NodeJS.Timeout | null = null;
    const forward = (chunk: Buffer) => {
      bytesFromDaemon += chunk.length;
      upstream.write(chunk);
    };
    const onData = (chunk: Buffer) => forward(chunk);
    const apply = () => {
      if (timer) clearInterval(timer);
      timer = null;
      client.off('data', onData);
      if (rate === null) {
        client.on('data', onData);
        client.resume();
        return;
      }
      client.pause();
      const perTick = Math.max(1, Math.floor(rate / 10));
      timer = setInterval(() => {
        if (client.readableLength === 0) {
          client.read(0); // ask the stream to fill from the kernel
          return;
        }
        const chunk = client.read(Math.min(perTick, client.readableLength)) as Buffer | null;
        if (chunk) forward(chunk);
      }, 100);
    };
    const pair = { client, upstream, apply };
    pairs.add(pair);
    upstream.on('data', (c: Buffer) => client.write(c));
    const end = () => {
      if (timer) clearInterval(timer);
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
    apply();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    setRate(r) {
      rate = r;
      for (const p of pairs) p.apply();
    },
    get bytesFromDaemon() {
      return bytesFromDaemon;
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
