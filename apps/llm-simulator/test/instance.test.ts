import { createSimulator, parseFaultSpec, type Simulator } from '../src';
import { completeChat, FAST, getStats, post, USER_HELLO, useSimulator } from './helpers';

const CHAT = { model: 'sim-small', messages: USER_HELLO, max_tokens: 3 };
const MESSAGE = { model: 'sim-small', messages: USER_HELLO, max_tokens: 3 };

describe('instance identity', () => {
  const running = useSimulator({ ...FAST, name: 'backend-b' });

  it('names itself on every response, whatever the route or outcome, and in /stats', async () => {
    const { url } = running();
    const responses = await Promise.all([
      post(`${url}/v1/chat/completions`, CHAT),
      post(`${url}/v1/chat/completions`, { ...CHAT, stream: true }),
      post(`${url}/v1/messages`, { ...MESSAGE, stream: true }),
      post(`${url}/v1/messages`, { model: 'sim-small', messages: USER_HELLO }),
      post(`${url}/v1/chat/completions`, CHAT, { 'x-simulator-fault': 'status=503' }),
      post(`${url}/v1/embeddings`, { model: 'e', input: 'x' }),
      fetch(`${url}/v1/models`),
      fetch(`${url}/health`),
      fetch(`${url}/admin/fault`),
      fetch(`${url}/nowhere`),
    ]);
    for (const response of responses) {
      await response.arrayBuffer();
      expect(response.headers.get('x-simulator-instance')).toBe('backend-b');
    }
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 400, 503, 200, 200, 200, 200, 404]);

    const stats = await fetch(`${url}/stats`);
    expect(stats.headers.get('x-simulator-instance')).toBe('backend-b');
    expect(((await stats.json()) as { name: string }).name).toBe('backend-b');
  });

  it('keeps its name across a stats reset', async () => {
    const reset = await fetch(`${running().url}/stats/reset`, { method: 'POST' });
    expect(((await reset.json()) as { name: string }).name).toBe('backend-b');
  });

  it('is called sim by default, so two unnamed instances are told apart only by URL', async () => {
    const simulator = createSimulator(FAST);
    const { url } = await simulator.listen(0);
    try {
      const response = await fetch(`${url}/health`);
      expect(response.headers.get('x-simulator-instance')).toBe('sim');
      expect((await getStats(url)).name).toBe('sim');
    } finally {
      await simulator.close();
    }
  });

  it('refuses a name that cannot be sent as a header', () => {
    expect(() => createSimulator({ name: 'bad\nname' })).toThrow();
  });
});

describe('several instances as separate backends', () => {
  const simulators: Simulator[] = [];
  const urls: string[] = [];

  beforeAll(async () => {
    for (const [name, models] of [
      ['small-only', ['sim-small']],
      ['large-only', ['sim-large']],
    ] as const) {
      const simulator = createSimulator({ ...FAST, name, models });
      simulators.push(simulator);
      urls.push((await simulator.listen(0)).url);
    }
  });
  afterAll(() => Promise.all(simulators.map((s) => s.close())));

  it('answers only its own models, on both APIs, and says which instance answered', async () => {
    const [small, large] = urls as [string, string];

    const chatMissing = await post(`${small}/v1/chat/completions`, { ...CHAT, model: 'sim-large' });
    expect(chatMissing.status).toBe(404);
    expect(chatMissing.headers.get('x-simulator-instance')).toBe('small-only');
    expect(await chatMissing.json()).toMatchObject({ error: { code: 'model_not_found' } });

    const messageMissing = await post(`${small}/v1/messages`, { ...MESSAGE, model: 'sim-large' });
    expect(messageMissing.status).toBe(404);
    expect(await messageMissing.json()).toEqual({
      type: 'error',
      error: { type: 'not_found_error', message: 'model: sim-large' },
    });

    const served = await post(`${large}/v1/messages`, { ...MESSAGE, model: 'sim-large' });
    expect(served.status).toBe(200);
    expect(served.headers.get('x-simulator-instance')).toBe('large-only');
    expect((await completeChat(small, CHAT)).model).toBe('sim-small');

    const listed = (await (await fetch(`${small}/v1/models`)).json()) as { data: { id: string }[] };
    expect(listed.data.map((m) => m.id)).toEqual(['sim-small']);
  });
});

describe('the admin fault toggle', () => {
  const running = useSimulator();
  const chat = () => post(`${running().url}/v1/chat/completions`, CHAT);
  const setFault = (fault: unknown) => post(`${running().url}/admin/fault`, { fault });
  const currentFault = async () => (await (await fetch(`${running().url}/admin/fault`)).json()) as unknown;
  afterEach(() => setFault(null));

  it('starts with no fault', async () => {
    expect(await currentFault()).toEqual({ fault: null });
  });

  it('makes a healthy backend fail on both APIs, then recover, without a restart', async () => {
    const { url } = running();
    expect((await chat()).status).toBe(200);

    const set = await setFault('STATUS=529; retry-after=2');
    expect(set.status).toBe(200);
    expect(await set.json()).toEqual({ fault: 'STATUS=529;retry-after=2' });
    expect(await currentFault()).toEqual({ fault: 'STATUS=529;retry-after=2' });

    const failedChat = await chat();
    expect(failedChat.status).toBe(529);
    expect(failedChat.headers.get('retry-after')).toBe('2');
    await failedChat.arrayBuffer();
    const failedMessage = await post(`${url}/v1/messages`, MESSAGE);
    expect(failedMessage.status).toBe(529);
    expect(await failedMessage.json()).toMatchObject({ error: { type: 'overloaded_error' } });
    const overridden = await post(`${url}/v1/chat/completions`, CHAT, { 'x-simulator-fault': 'none' });
    expect(overridden.status).toBe(200);
    expect((await fetch(`${url}/health`)).status).toBe(200);

    const cleared = await setFault(null);
    expect(await cleared.json()).toEqual({ fault: null });
    expect((await chat()).status).toBe(200);
    expect(await getStats(url)).toMatchObject({ faults: { status: 2 } });
  });

  it('clears the fault with "none" as well as null', async () => {
    await setFault('hang');
    expect(await (await setFault('none')).json()).toEqual({ fault: null });
    expect((await chat()).status).toBe(200);
  });

  it('starts a rate sequence over each time it is set', async () => {
    const statuses = async (count: number) => {
      const result: number[] = [];
      for (let i = 0; i < count; i++) {
        const response = await chat();
        await response.arrayBuffer();
        result.push(response.status);
      }
      return result;
    };
    await setFault('status=503;rate=0.5');
    expect(await statuses(3)).toEqual([503, 200, 503]);
    await setFault('status=503;rate=0.5');
    expect(await statuses(2)).toEqual([503, 200]);
  });

  it('refuses a bad spec or body with 400 and keeps the fault it had', async () => {
    await setFault('status=502');
    const bad = await setFault('status=200');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: { type: 'invalid_request_error', param: 'fault', code: 'invalid_fault' },
    });
    const missing = await post(`${running().url}/admin/fault`, {});
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({
      error: { param: 'fault', code: 'missing_required_parameter' },
    });
    expect((await setFault(503)).status).toBe(400);
    expect(await currentFault()).toEqual({ fault: 'status=502' });
  });

  it('is also available in-process as setFault', async () => {
    running().simulator.setFault(parseFaultSpec('status=418'));
    expect(await currentFault()).toEqual({ fault: 'status=418' });
    expect((await chat()).status).toBe(418);
    running().simulator.setFault(undefined);
    expect((await chat()).status).toBe(200);
  });
});
