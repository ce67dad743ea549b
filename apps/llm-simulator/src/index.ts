export { createSimulator, type Simulator, type SimulatorOptions } from './simulator';
export type { SimulatorStats } from './stats';
export { simulatorEnvSchema, parseConfig, ConfigError, type SimulatorConfig } from './config';
export { parseFaultSpec, FaultSpecError, type FaultSpec, type FaultAction } from './faults';
export { SIMULATOR_HEADERS } from './controls';
