/**
 * Whether the OTEL_ variables ask for traces. The SDK's own default is to export over OTLP to
 * localhost; llmq's is off, so a deployment without a collector pays nothing and logs no export
 * errors. Tracing is on when `OTEL_SDK_DISABLED` is not `true` and either `OTEL_TRACES_EXPORTER`
 * names an exporter (`otlp`, `console`, `zipkin`; `none` alone is off) or an OTLP endpoint is set
 * (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
 */
export function tracingEnabled(env: Readonly<Record<string, string | undefined>>): boolean {
  const value = (name: string) => env[name]?.trim() ?? '';
  if (value('OTEL_SDK_DISABLED').toLowerCase() === 'true') return false;
  const exporters = value('OTEL_TRACES_EXPORTER')
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'none');
  if (exporters.length > 0) return true;
  if (value('OTEL_TRACES_EXPORTER') !== '') return false; // "none" (only)
  return value('OTEL_EXPORTER_OTLP_ENDPOINT') !== '' || value('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') !== '';
}
