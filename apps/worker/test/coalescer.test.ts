import { TokenCoalescer } from '../src/coalescer';

describe('TokenCoalescer', () => {
  it('sends the first delta at once, joins the next ones within the window, keeps order', async () => {
    const out: string[] = [];
    const c = new TokenCoalescer(30, async (t) => {
      await new Promise((r) => setTimeout(r, 5));
      out.push(t);
    });
    c.push('a');
    c.push('b');
    c.push('c');
    await new Promise((r) => setTimeout(r, 15));
    expect(out).toEqual(['a']); // no window paid by the first token
    await new Promise((r) => setTimeout(r, 60));
    expect(out).toEqual(['a', 'bc']);
    c.push('d'); // after a quiet spell: at once again
    await c.flush();
    expect(out).toEqual(['a', 'bc', 'd']);
  });

  it('queues its events behind an earlier append', async () => {
    const out: string[] = [];
    let release!: () => void;
    const earlier = new Promise<void>((r) => (release = r)).then(() => out.push('status'));
    const c = new TokenCoalescer(0, async (t) => void out.push(t), earlier);
    c.push('x');
    await new Promise((r) => setTimeout(r, 10));
    expect(out).toEqual([]);
    release();
    await c.flush();
    expect(out).toEqual(['status', 'x']);
  });

  it('reports an append failure on flush', async () => {
    const c = new TokenCoalescer(0, async () => {
      throw new Error('redis gone');
    });
    c.push('x');
    await expect(c.flush()).rejects.toThrow('redis gone');
  });
});
