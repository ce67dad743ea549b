/** OpenAI's page of a list (`GET /v1/files`, `/v1/batches`): cursor ids of both ends and `has_more`. */
export function listPage<T extends { id: string }>(data: T[], hasMore: boolean) {
  return {
    object: 'list' as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}
