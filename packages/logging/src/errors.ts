import { stdSerializers } from 'pino';

const CENSOR = '[redacted]';
/** The property by which an error marks text an outside party sent back (see {@link scrubError}). */
export const UPSTREAM_TEXT = 'upstreamMessage';
const MAX_DEPTH = 6;

/**
 * pino's error serializer, minus text a provider sent back. Providers echo requests in their error
 * messages ("invalid content: <the prompt>"), and those messages are part of ours ("provider
 * answered 400: …"), so redacting by field name cannot catch them. An error that carries such text
 * keeps it in an `upstreamMessage` property (at any depth: `details`, `last`, `cause`); every
 * occurrence of it in the serialized error (message, stack, nested errors) is replaced, unless
 * `logPrompts`.
 */
export function scrubError(error: unknown, options: { logPrompts: boolean }): unknown {
  const serialized: unknown =
    error instanceof Error ? stdSerializers.err(error) : (error as Record<string, unknown>);
  if (options.logPrompts) return serialized;
  const texts = new Set<string>();
  collect(error, texts, new Set(), 0);
  if (texts.size === 0) return serialized;
  const sorted = [...texts].sort((a, b) => b.length - a.length);
  return replace(serialized, sorted, 0);
}

function collect(value: unknown, into: Set<string>, seen: Set<object>, depth: number): void {
  if (depth > MAX_DEPTH || typeof value !== 'object' || value === null || seen.has(value)) return;
  seen.add(value);
  // Own properties, enumerable or not (`cause` set through the Error constructor is not).
  for (const name of Object.getOwnPropertyNames(value)) {
    let v: unknown;
    try {
      v = (value as Record<string, unknown>)[name];
    } catch {
      continue;
    }
    if (name === UPSTREAM_TEXT && typeof v === 'string' && v.trim() !== '') into.add(v);
    else collect(v, into, seen, depth + 1);
  }
}

function replace(value: unknown, texts: string[], depth: number): unknown {
  if (typeof value === 'string') {
    let s = value;
    for (const t of texts) if (s.includes(t)) s = s.split(t).join(CENSOR);
    return s;
  }
  if (depth > MAX_DEPTH || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => replace(v, texts, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = k === UPSTREAM_TEXT ? CENSOR : replace(v, texts, depth + 1);
  }
  return out;
}
