/**
 * The text deltas of a job for a client that cannot take text back (OpenAI's streams only append).
 *
 * A job whose worker died mid-stream runs again, and its stream says `restarted`: the text starts
 * over. The new attempt's text is passed over while it repeats what the client already has (a
 * deterministic request, a cache hit, a coalesced twin: the usual case), and streaming resumes
 * where the client stands. If it says something else, the stream cannot be continued honestly:
 * {@link DeltaFilter.push} returns null and the caller ends the stream with an error.
 */
export class DeltaFilter {
  /** What the client has been sent. */
  private sent = '';
  /** The restarted attempt's text so far, while it is still catching up with `sent`. */
  private replay: string | null = null;

  /** The job's text starts over (a `status` event with `restarted: true`). */
  restart(): void {
    if (this.sent !== '') this.replay = '';
  }

  /** The part of a token event's text the client has not seen ('' for none), or null on divergence. */
  push(text: string): string | null {
    if (this.replay === null) {
      this.sent += text;
      return text;
    }
    this.replay += text;
    if (this.replay.length <= this.sent.length) return this.sent.startsWith(this.replay) ? '' : null;
    if (!this.replay.startsWith(this.sent)) return null;
    const fresh = this.replay.slice(this.sent.length);
    this.sent = this.replay;
    this.replay = null;
    return fresh;
  }
}
