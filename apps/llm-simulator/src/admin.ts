import { z } from 'zod';
import { readFault } from './controls';
import type { FaultSpec } from './faults';
import { parseBody } from './validation';

/**
 * `/admin/fault`: the instance-wide default fault (SIM_FAULT), replaced at run time. For
 * tests only: it lets one make a backend fail and recover without restarting its process.
 */
const faultUpdateSchema = z.object({ fault: z.string().nullable() });

/** `{"fault": "<spec>" | null}` → the new default fault (undefined for null, "" or "none"). */
export function parseFaultUpdate(body: unknown): FaultSpec | undefined {
  const { fault } = parseBody(faultUpdateSchema, body);
  return fault === null ? undefined : readFault(fault, 'fault', "value for 'fault'");
}

/** What `GET /admin/fault` answers: the normalised spec, or null when there is none. */
export function describeFault(fault: FaultSpec | undefined): { fault: string | null } {
  return { fault: fault?.source ?? null };
}
