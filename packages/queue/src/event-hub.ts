import type { JobEvent } from '@llmq/contracts';
import type { Redis } from 'ioredis';
import { parseEventMessage, type EventStream } from './event-stream';
import { keys } from './keys';

type Listener = (event: JobEvent) => void;

/**
 * One pub/sub connection per process, shared by every follower (SSE client) of every job:
 * channels are subscribed while someone follows them and dropped after. This is what keeps an
 * API process at two Redis connections however many streams it serves.
 */
export class EventHub {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly resyncs = new Set<() => void>();

  constructor(
    private readonly subscriber: Redis,
    private readonly stream: EventStream,
  ) {
    subscriber.on('message', (channel: string, message: string) => {
      const set = this.listeners.get(channel);
      if (!set) return;
      const event = parseEventMessage(message);
      if (event) for (const l of set) l(event);
    });
    // After a reconnect, messages published meanwhile are gone: followers re-read the stream.
    subscriber.on('ready', () => {
      for (const resync of this.resyncs) resync();
    });
  }

  /** Number of channels this process is subscribed to (for metrics and tests). */
  get channelCount(): number {
    return this.listeners.size;
  }

  /**
   * Delivers a job's events with seq > afterSeq, in order, without gaps or duplicates: the
   * backlog from the stream first, then live events. Resolves once subscribed and the backlog
   * is delivered; the returned function stops following.
   */
  async follow(jobId: string, afterSeq: number, onEvent: Listener): Promise<() => void> {
    const channel = keys.eventChannel(this.stream.prefix, jobId);
    let last = afterSeq;
    let closed = false;
    let pending: JobEvent[] | null = []; // live events that arrive while a read is in progress
    let reading: Promise<void> = Promise.resolve();

    const deliver = (events: JobEvent[]) => {
      for (const e of events.sort((x, y) => x.seq - y.seq)) {
        if (closed || e.seq <= last) continue;
        if (e.seq > last + 1) {
          catchUp();
          return;
        }
        last = e.seq;
        onEvent(e);
      }
    };
    const catchUp = () => {
      if (pending !== null) return; // a read is already under way; it will deliver everything
      pending = [];
      reading = reading.then(async () => {
        try {
          const backlog = await this.stream.read(jobId, last);
          const live = pending ?? [];
          pending = null;
          deliver([...backlog, ...live]);
        } catch {
          pending = null; // Redis is away; the 'ready' resync retries
        }
      });
    };
    const listener: Listener = (e) => {
      if (pending !== null) pending.push(e);
      else deliver([e]);
    };

    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    const resync = () => catchUp();
    this.resyncs.add(resync);
    const stop = () => {
      if (closed) return;
      closed = true;
      this.resyncs.delete(resync);
      const s = this.listeners.get(channel);
      s?.delete(listener);
      if (s && s.size === 0) {
        this.listeners.delete(channel);
        this.subscriber.unsubscribe(channel).catch(() => undefined);
      }
    };
    try {
      if (set.size === 1) await this.subscriber.subscribe(channel);
      const backlog = await this.stream.read(jobId, last);
      const live = pending;
      pending = null;
      deliver([...backlog, ...live]);
    } catch (error) {
      stop();
      throw error;
    }
    return stop;
  }
}
