export {
  DEFAULT_PRIORITY,
  LIMITS,
  conversationIdSchema,
  PRIORITIES,
  generateRequestSchema,
  generationSpecSchema,
  messageSchema,
  prioritySchema,
  samplingSchema,
  toGenerationSpec,
} from './generate';
export type { ChatMessage, GenerateRequest, GenerationSpec, Priority, SamplingParams } from './generate';
export {
  JOB_STATUSES,
  TERMINAL_STATUSES,
  isTerminal,
  jobErrorSchema,
  jobStatusSchema,
  usageSchema,
} from './job';
export type { AcceptedJob, JobError, JobStatus, JobView, Usage } from './job';
export { TERMINAL_EVENT_TYPES, isTerminalEvent } from './events';
export type { JobEvent, JobEventBody, JobEventType } from './events';
export {
  RAG_LIMITS,
  chunkingSchema,
  collectionNameSchema,
  consistencyTokenSchema,
  documentInputSchema,
  documentMetadataSchema,
  ingestRequestSchema,
  metadataFilterSchema,
  ragOptionsSchema,
} from './rag';
export type { IngestRequest, MetadataFilter, RagOptions, SourceView } from './rag';
export {
  chatCompletionRequestSchema,
  chatCompletionToGenerateRequest,
  completionId,
  finishReasonOf,
  openAiJobError,
  serviceTierPriority,
  toChatCompletion,
} from './openai';
export type { ChatCompletion, ChatCompletionRequest, OpenAiErrorObject } from './openai';
