#!/bin/sh
# The image's entry point: ROLE picks the process. `exec` makes node PID 1, so it receives the
# SIGTERM of `docker stop` / Kubernetes itself and drains (API: SHUTDOWN_TIMEOUT_MS, worker:
# DRAIN_TIMEOUT_MS) instead of being killed behind a shell.
set -eu
case "${ROLE:-}" in
  api) exec node /app/apps/api/dist/main.js "$@" ;;
  worker) exec node /app/apps/worker/dist/main.js "$@" ;;
  simulator) exec node /app/apps/llm-simulator/dist/main.js "$@" ;;
  *)
    echo "ROLE must be api, worker or simulator (got \"${ROLE:-}\")" >&2
    exit 64
    ;;
esac
