import type { ChatMessage, GenerationSpec } from '@llmq/contracts';
import type { ConversationRepository, ConversationTurn } from '@llmq/db';
import { countPromptTokens } from '@llmq/llm';

/** A turn that cannot run however often it is tried: the job fails with this code. */
export class ConversationError extends Error {
  constructor(
    readonly code: 'context_length_exceeded' | 'turn_wait_exceeded',
    message: string,
  ) {
    super(message);
    this.name = 'ConversationError';
  }
}

export interface ConversationHistoryOptions {
  repository: ConversationRepository;
  /** The model's context window in tokens. */
  contextWindow: (model: string) => number;
  /** Tokens kept free for the reply when the request sets no max_tokens. @defaultValue 1024 */
  defaultMaxTokens?: number;
  /** The most prompt tokens a turn may send, history included (the API's MAX_PROMPT_TOKENS). */
  maxPromptTokens: number;
}

/** Tokens left unused at the edge of the window: providers count a few framing tokens of their own. */
const MARGIN_TOKENS = 64;

/**
 * Puts a conversation's history in front of a turn's messages. A turn runs only once every
 * earlier turn has finished, so turns submitted at once still see each other's answers, whichever
 * worker picks them up.
 */
export class ConversationHistory {
  constructor(private readonly o: ConversationHistoryOptions) {}

  /**
   * The first earlier turn still unfinished, which this one must wait for; null when it may run
   * (also when its own job has finished meanwhile, cancelled say: the run then finds that out).
   */
  async waitingFor(jobId: string): Promise<string | null> {
    const state = await this.o.repository.turnState(jobId);
    if (!state || state.status === 'completed' || state.status === 'failed' || state.status === 'cancelled') {
      return null;
    }
    return state.waitingFor;
  }

  async build(
    jobId: string,
    spec: GenerationSpec,
  ): Promise<
    { ready: false; waitingFor: string } | { ready: true; spec: GenerationSpec; droppedTurns: number }
  > {
    const history = await this.o.repository.historyFor(jobId);
    // No turn (the conversation was deleted meanwhile): the request's own messages alone.
    if (history === null) return { ready: true, spec, droppedTurns: 0 };
    if (!history.ready) return { ready: false, waitingFor: history.waitingFor };
    const reply = spec.params.max_tokens ?? this.o.defaultMaxTokens ?? 1024;
    // The window holds prompt and reply; the prompt also keeps to the API's own cap, which the
    // turn's new messages alone were checked against.
    const budget = Math.min(this.o.contextWindow(spec.model) - reply - MARGIN_TOKENS, this.o.maxPromptTokens);
    const fitted = fitConversation(history.turns, spec.messages, budget);
    if (fitted === null) {
      throw new ConversationError(
        'context_length_exceeded',
        `this turn and max_tokens (${reply}) do not fit ${spec.model}'s context window (or the prompt limit of ${this.o.maxPromptTokens} tokens) even without history`,
      );
    }
    return { ready: true, spec: { ...spec, messages: fitted.messages }, droppedTurns: fitted.droppedTurns };
  }
}

/**
 * The prompt of a turn: earlier completed turns (each its messages and the assistant's reply)
 * before the current messages, dropping the oldest turns until the whole fits `budgetTokens`.
 * The conversation's instructions (leading system or developer messages of the current turn, else
 * of the first) come first and are kept whatever is dropped. Failed and cancelled turns
 * are left out: their question was never answered. Null when the current turn alone is too long.
 */
export function fitConversation(
  turns: ConversationTurn[],
  current: ChatMessage[],
  budgetTokens: number,
): { messages: ChatMessage[]; droppedTurns: number } | null {
  const answered = turns.filter((t) => t.reply !== null);
  const exchanges = answered.map((t): ChatMessage[] => [
    ...t.messages,
    { role: 'assistant', content: t.reply ?? '' },
  ]);
  // The conversation's instructions lead: the current turn's own if it brings some (they replace
  // the earlier ones), else those the first turn opened with. Every earlier turn's own leading
  // instructions are left out (the Responses API repeats `instructions` on each turn), so they
  // never stand in the middle of the prompt.
  const [own, asked] = splitInstructions(current);
  let pinned = own;
  exchanges.forEach((exchange, i) => {
    const [lead, rest] = splitInstructions(exchange);
    exchanges[i] = rest;
    if (i === 0 && pinned.length === 0) pinned = lead;
  });
  // Counts add up message by message (less the 3 priming tokens counted once), so each
  // exchange is tokenized once however many are dropped.
  const base = countPromptTokens([...pinned, ...asked]);
  if (base > budgetTokens) return null;
  const costs = exchanges.map((e) => countPromptTokens(e) - EMPTY_PROMPT_TOKENS);
  let total = base + costs.reduce((a, b) => a + b, 0);
  let dropped = 0;
  while (total > budgetTokens) total -= costs[dropped++] ?? 0;
  return { messages: [...pinned, ...exchanges.slice(dropped).flat(), ...asked], droppedTurns: dropped };
}

const EMPTY_PROMPT_TOKENS = countPromptTokens([]);
/** The leading system and developer messages, and the rest. */
function splitInstructions(messages: ChatMessage[]): [ChatMessage[], ChatMessage[]] {
  const lead = messages.findIndex((m) => m.role !== 'system' && m.role !== 'developer');
  return lead === -1 ? [messages, []] : [messages.slice(0, lead), messages.slice(lead)];
}
