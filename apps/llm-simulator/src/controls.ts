import type { IncomingHttpHeaders } from 'node:http';
import { ApiError } from './errors';
import { FaultSpecError, parseFaultSpec, type FaultSpec } from './faults';

/** Request headers that steer one request, overriding the simulator's configuration. */
export const SIMULATOR_HEADERS = {
  /** A fault spec (see faults.ts); replaces SIM_FAULT for this request, `none` disables it. */
  fault: 'x-simulator-fault',
  /** Milliseconds before the first content token. */
  ttftMs: 'x-simulator-ttft-ms',
  /** Milliseconds between content tokens. */
  tokenMs: 'x-simulator-token-ms',
  /** Set on responses a fault was applied to, with the spec that was applied. */
  faultApplied: 'x-simulator-fault-applied',
  /** Set on every response: the instance's name (`SIM_NAME`). */
  instance: 'x-simulator-instance',
} as const;

export interface Timing {
  readonly ttftMs: number;
  readonly tokenMs: number;
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]. */
  readonly jitter: number;
}

export interface Controls {
  readonly timing: Timing;
  readonly fault: FaultSpec | undefined;
}

const MAX_DELAY_MS = 600_000;

/** The timing and fault for one request: configuration, overridden by its headers. */
export function readControls(
  headers: IncomingHttpHeaders,
  timing: Timing,
  fault: FaultSpec | undefined,
): Controls {
  const faultHeader = headers[SIMULATOR_HEADERS.fault];
  return {
    timing: {
      ttftMs: readDelay(headers, SIMULATOR_HEADERS.ttftMs) ?? timing.ttftMs,
      tokenMs: readDelay(headers, SIMULATOR_HEADERS.tokenMs) ?? timing.tokenMs,
      jitter: timing.jitter,
    },
    fault:
      typeof faultHeader === 'string'
        ? readFault(faultHeader, SIMULATOR_HEADERS.fault, `header '${SIMULATOR_HEADERS.fault}'`)
        : fault,
  };
}

/**
 * A delay scaled by jitter; zero stays zero so that zero-delay streams are written at once.
 * Whole milliseconds, because Node keeps one timer list per distinct duration: fractional
 * delays would give nearly every pending token its own list.
 */
export function jittered(ms: number, jitter: number, random: () => number = Math.random): number {
  return ms <= 0 ? 0 : Math.round(ms * (1 + jitter * (2 * random() - 1)));
}

function readDelay(headers: IncomingHttpHeaders, name: string): number | undefined {
  const raw = headers[name];
  if (raw === undefined) return undefined;
  const text = Array.isArray(raw) ? '' : raw.trim();
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(value <= MAX_DELAY_MS)) {
    throw ApiError.invalidRequest(
      `Invalid value for header '${name}': expected milliseconds from 0 to ${MAX_DELAY_MS}, got '${String(raw)}'.`,
      name,
    );
  }
  return value;
}

/** Parses a fault spec a request sent; a bad one is a 400 `invalid_fault` naming `param`. */
export function readFault(text: string, param: string, description: string): FaultSpec | undefined {
  try {
    return parseFaultSpec(text);
  } catch (error) {
    if (!(error instanceof FaultSpecError)) throw error;
    throw ApiError.invalidRequest(`Invalid ${description}: ${error.message}`, param, 'invalid_fault');
  }
}
