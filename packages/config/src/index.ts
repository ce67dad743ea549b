export { ConfigError, parseEnv } from './parse';
export { envBoolean, envInt, envList, envUrl, envDuration } from './fields';
