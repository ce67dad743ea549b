import net from 'node:net';
import { dialHost, freePort, hostForUrl } from '../src';

describe('freePort', () => {
  it('returns a port that can be bound right away', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65_536);
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });

  it('fails for an address this machine does not have', async () => {
    await expect(freePort('192.0.2.1')).rejects.toThrow(/EADDRNOTAVAIL/);
  });
});

describe('the host clients dial', () => {
  it('maps wildcard binds to loopback and brackets IPv6 for URLs', () => {
    expect(dialHost('0.0.0.0')).toBe('127.0.0.1');
    expect(hostForUrl('::')).toBe('[::1]');
    expect(hostForUrl('::1')).toBe('[::1]');
    expect(hostForUrl('127.0.0.1')).toBe('127.0.0.1');
  });
});
