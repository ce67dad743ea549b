import { createHash } from 'node:crypto';
import type { GenerationSpec } from '@llmq/contracts';

/** Stable JSON: object keys sorted, undefined dropped, so equal requests hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The cache key: a hash of everything that shapes the answer (the model after alias
 * resolution, every message, every sampling and output parameter) and of the scope, which is
 * the tenant unless the operator declared a shared scope. Two tenants never share an entry by
 * accident; bump the version when the key's inputs change meaning.
 */
export function cacheKey(scope: string, spec: GenerationSpec): string {
  const material = canonicalJson({
    v: 1,
    scope,
    model: spec.model,
    messages: spec.messages,
    params: spec.params,
  });
  return createHash('sha256').update(material).digest('hex');
}

/** By default only deterministic requests are cached: temperature 0, or a fixed seed. */
export function isDeterministic(spec: GenerationSpec): boolean {
  return spec.params.temperature === 0 || spec.params.seed !== undefined;
}
