import net from 'node:net';

/**
 * Asks the operating system for a TCP port that is free on `host` right now.
 *
 * The port is released before this resolves, so another process can take it before the
 * caller binds it; callers that spawn a server on it must treat "address in use" as a
 * startup failure (the servers in this package do).
 *
 * @param host - interface to probe. @defaultValue `'127.0.0.1'`
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close((error) => {
        if (error) reject(error);
        else if (port > 0) resolve(port);
        else reject(new Error(`could not read the port bound on ${host}`));
      });
    });
  });
}

/** The address a client dials to reach a server bound on `host`: a wildcard bind (`0.0.0.0`, `::`) is reached through loopback. */
export function dialHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

/** {@link dialHost}, with IPv6 literals bracketed for use in a URL. */
export function hostForUrl(host: string): string {
  const dial = dialHost(host);
  return dial.includes(':') ? `[${dial}]` : dial;
}
