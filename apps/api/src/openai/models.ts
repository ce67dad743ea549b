import { Router } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError } from '../errors';

interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/**
 * `GET /models` and `GET /models/:model`: the models of the providers file (reloaded with it),
 * their aliases (a client configured with an alias sees it listed), and the embeddings model
 * when one is configured.
 */
export function modelsRouter(deps: ApiDeps): Router {
  const router = Router();
  // OpenAI's `created` is when a model was published; llmq knows when it started serving it.
  const created = Math.floor(Date.now() / 1000);
  const model = (id: string): ModelObject => ({ id, object: 'model', created, owned_by: 'llmq' });
  const embeddingsModel = () => (deps.embedder ? deps.settings.embeddingsModel : null);

  router.get('/models', (_req, res) => {
    const ids = new Set(deps.models.requestNames());
    const embeddings = embeddingsModel();
    if (embeddings) ids.add(embeddings);
    res.json({ object: 'list', data: [...ids].sort().map(model) });
  });

  // Model names may hold slashes (`org/model`): the id is every segment after /models/.
  router.get('/models/*model', (req, res) => {
    const segments = req.params.model as unknown as string[];
    const id = segments.join('/');
    if (deps.models.resolve(id) === null && id !== embeddingsModel()) {
      throw new HttpError(404, 'model_not_found', `The model '${id}' does not exist`, { field: 'model' });
    }
    res.json(model(id));
  });

  return router;
}
