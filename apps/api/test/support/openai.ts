import OpenAI from 'openai';

/** The OpenAI SDK error a call rejects with; the test fails if the call resolves. */
export async function failure(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await call;
  } catch (error) {
    if (error instanceof OpenAI.APIError) return error;
    throw error;
  }
  throw new Error('the call succeeded, but it should have failed');
}
