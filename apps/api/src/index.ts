export { createApp } from './app';
export type { ApiApp } from './app';
export { apiEnvSchema, settingsFrom } from './config';
export type { ApiEnv, ApiSettings } from './config';
export type { ApiDeps } from './deps';
