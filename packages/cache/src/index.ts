export { cacheKey, canonicalJson, isDeterministic } from './key';
export { CacheControlError, parseCacheControl } from './controls';
export type { CacheControl } from './controls';
export { ResponseCache } from './response-cache';
export type {
  CacheCounters,
  CacheEntry,
  CacheHit,
  CacheSource,
  ResponseCacheOptions,
} from './response-cache';
export { EmbeddingsClient, promptText } from './embeddings';
export type { EmbeddingsOptions } from './embeddings';
