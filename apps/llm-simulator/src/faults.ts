/**
 * Fault specs: what `SIM_FAULT` and the `x-simulator-fault` header say should go wrong.
 *
 *   spec      = "none" | directive *( ";" directive )
 *   directive = "status=" 400..599 | "retry-after=" seconds | "retry-after-ms=" ms
 *             | "hang" | "cut-after=" tokens | "trickle=" ms | "rate=" 0..1
 *
 * status and hang each stand alone; cut-after and trickle may be combined (a slow stream
 * that then dies). retry-after(-ms) only make sense with status.
 */
export type FaultAction =
  | {
      readonly kind: 'status';
      readonly status: number;
      readonly retryAfterSeconds?: number;
      readonly retryAfterMs?: number;
    }
  | { readonly kind: 'hang' }
  | { readonly kind: 'stream'; readonly cutAfter?: number; readonly trickleMs?: number };

export interface FaultSpec {
  readonly action: FaultAction;
  /** Fraction of requests (carrying this same spec) the fault applies to. */
  readonly rate: number;
  /** The normalised spec text; keys the rate sequence and is echoed in `x-simulator-fault-applied`. */
  readonly source: string;
}

export class FaultSpecError extends Error {
  constructor(
    readonly directive: string,
    reason: string,
  ) {
    super(`invalid fault directive "${directive}": ${reason}`);
    this.name = 'FaultSpecError';
  }
}

type DirectiveName =
  'none' | 'status' | 'retry-after' | 'retry-after-ms' | 'hang' | 'cut-after' | 'trickle' | 'rate';

const FLAG_DIRECTIVES: ReadonlySet<string> = new Set(['none', 'hang']);
const VALUE_DIRECTIVES: ReadonlySet<string> = new Set([
  'status',
  'retry-after',
  'retry-after-ms',
  'cut-after',
  'trickle',
  'rate',
]);

interface Directive {
  readonly text: string;
  readonly value: string;
}

/** Parses a fault spec. Returns undefined for an empty spec or `none`; throws FaultSpecError. */
export function parseFaultSpec(text: string): FaultSpec | undefined {
  const directives = splitDirectives(text);
  if (directives.size === 0) return undefined;
  const none = directives.get('none');
  if (none) {
    if (directives.size > 1)
      throw new FaultSpecError(none.text, 'none cannot be combined with other directives');
    return undefined;
  }
  const source = [...directives.values()].map((d) => d.text).join(';');
  return { action: buildAction(directives), rate: readRate(directives), source };
}

function splitDirectives(text: string): Map<DirectiveName, Directive> {
  const directives = new Map<DirectiveName, Directive>();
  for (const raw of text.split(';')) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : part.slice(eq + 1).trim();
    if (FLAG_DIRECTIVES.has(name)) {
      if (value !== undefined) throw new FaultSpecError(part, `${name} takes no value`);
    } else if (VALUE_DIRECTIVES.has(name)) {
      if (value === undefined || value === '') throw new FaultSpecError(part, `${name} needs a value`);
    } else {
      throw new FaultSpecError(part, 'unknown directive');
    }
    const key = name as DirectiveName;
    if (directives.has(key)) throw new FaultSpecError(part, `${name} is given twice`);
    directives.set(key, { text: part, value: value ?? '' });
  }
  return directives;
}

function buildAction(directives: Map<DirectiveName, Directive>): FaultAction {
  const status = directives.get('status');
  const hang = directives.get('hang');
  const cutAfter = directives.get('cut-after');
  const trickle = directives.get('trickle');
  const kinds = [status, hang, cutAfter ?? trickle].filter((d): d is Directive => d !== undefined);
  const [first, second] = kinds;
  if (second && first) throw new FaultSpecError(second.text, `cannot be combined with "${first.text}"`);

  for (const name of ['retry-after', 'retry-after-ms'] as const) {
    const directive = directives.get(name);
    if (directive && !status) throw new FaultSpecError(directive.text, `${name} needs a status directive`);
  }
  if (status) {
    const retryAfter = directives.get('retry-after');
    const retryAfterMs = directives.get('retry-after-ms');
    return {
      kind: 'status',
      status: readInteger(status, 400, 599),
      ...(retryAfter && { retryAfterSeconds: readInteger(retryAfter, 0, 86_400) }),
      ...(retryAfterMs && { retryAfterMs: readInteger(retryAfterMs, 0, 86_400_000) }),
    };
  }
  if (hang) return { kind: 'hang' };
  if (cutAfter || trickle) {
    return {
      kind: 'stream',
      ...(cutAfter && { cutAfter: readInteger(cutAfter, 0, 1_000_000) }),
      ...(trickle && { trickleMs: readInteger(trickle, 1, 600_000) }),
    };
  }
  const rate = directives.get('rate');
  throw new FaultSpecError(
    rate?.text ?? '',
    'rate needs a fault to apply (status, hang, cut-after or trickle)',
  );
}

function readRate(directives: Map<DirectiveName, Directive>): number {
  const rate = directives.get('rate');
  if (!rate) return 1;
  const value = /^(\d+(\.\d*)?|\.\d+)$/.test(rate.value) ? Number(rate.value) : NaN;
  if (!(value >= 0 && value <= 1)) throw new FaultSpecError(rate.text, 'rate must be a number from 0 to 1');
  return value;
}

function readInteger(directive: Directive, min: number, max: number): number {
  const value = /^\d+$/.test(directive.value) ? Number(directive.value) : NaN;
  if (!(value >= min && value <= max)) {
    const name = directive.text.slice(0, directive.text.indexOf('=')).trim();
    throw new FaultSpecError(directive.text, `${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/** Keeps the rate sequences from growing without bound when clients send ever-new specs. */
const MAX_TRACKED_SPECS = 1024;

/**
 * Decides which requests a fault applies to. Rather than rolling dice, each distinct spec
 * keeps a running credit, so `rate=0.25` hits exactly the 1st, 5th, 9th... request that
 * carries it: tests can count on the pattern (first call fails, retry succeeds).
 */
export class FaultSampler {
  private readonly credit = new Map<string, number>();

  applies(spec: FaultSpec): boolean {
    if (spec.rate >= 1) return true;
    if (spec.rate <= 0) return false;
    const credit = this.credit.get(spec.source) ?? 1;
    const fires = credit >= 1 - 1e-9;
    if (!this.credit.has(spec.source) && this.credit.size >= MAX_TRACKED_SPECS) this.credit.clear();
    this.credit.set(spec.source, (fires ? credit - 1 : credit) + spec.rate);
    return fires;
  }

  /** Starts the sequence of one spec over, as if it had never been applied. */
  restart(spec: FaultSpec): void {
    this.credit.delete(spec.source);
  }

  reset(): void {
    this.credit.clear();
  }
}
