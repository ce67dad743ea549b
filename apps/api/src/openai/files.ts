import { FileRepository, isFileId, type FileRecord, type NewFile } from '@llmq/db';
import busboy from 'busboy';
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { ApiDeps } from '../deps';
import { listPage } from './list';
import { HttpError, fromZod } from '../errors';

/**
 * OpenAI Files, for the Batch API: `POST /v1/files` (multipart, `purpose: batch`), list,
 * retrieve, content and delete. Files are stored in Postgres, bounded per upload
 * (FILE_UPLOAD_MAX_BYTES, enforced while the upload streams in) and per tenant
 * (FILE_STORAGE_MAX_BYTES). Another tenant's file is a 404 exactly like an unknown id.
 */
export function filesRouter(deps: ApiDeps): Router {
  const router = Router();
  const files = new FileRepository(deps.pool);

  router.post('/files', async (req, res) => {
    if (!req.is('multipart/form-data')) {
      const message = 'send the file as multipart/form-data (fields "file" and "purpose")';
      throw new HttpError(415, 'unsupported_media_type', message);
    }
    const { settings } = deps;
    const maxBytes = settings.fileUploadMaxBytes;
    // A body that cannot fit is refused before it is read; the connection closes, or Node would
    // read and drop all of it to keep the connection.
    if (Number(req.get('content-length') ?? 0) > maxBytes + MULTIPART_OVERHEAD) {
      throw tooLarge(maxBytes, { Connection: 'close' });
    }
    const upload = checkUpload(await readUpload(req, maxBytes), maxBytes);
    const principal = req.principal!;
    const outcome = await files.create(
      { tenantId: principal.tenantId, apiKeyId: principal.apiKeyId, ...upload },
      settings.fileStorageMaxBytes,
    );
    if (!outcome.created) {
      const message = `Your files hold ${outcome.storedBytes} bytes; with this one they would pass the limit of ${settings.fileStorageMaxBytes}. Delete files you no longer need.`;
      throw new HttpError(400, 'storage_limit_exceeded', message, { field: 'file' });
    }
    req.log.info({ fileId: outcome.file.id, bytes: outcome.file.bytes }, 'file uploaded');
    res.json(toFileObject(outcome.file));
  });

  router.get('/files', async (req, res) => {
    const query = listQuery.safeParse(req.query);
    if (!query.success) throw fromZod(query.error);
    const { limit, after, order, purpose } = query.data;
    const page = await files.list(req.principal!.tenantId, { limit, after, order, purpose });
    const data = page.files.map(toFileObject);
    res.json(listPage(data, page.hasMore));
  });

  router.get('/files/:id', async (req, res) => {
    res.json(toFileObject(await ownFile(files, req)));
  });

  router.get('/files/:id/content', async (req, res) => {
    const file = await ownFile(files, req);
    const content = await files.content(file.tenantId, file.id);
    if (content === null) throw fileNotFound(file.id); // deleted meanwhile
    res.type('application/octet-stream').attachment(file.filename).send(content);
  });

  router.delete('/files/:id', async (req, res) => {
    const id = String(req.params.id);
    if (!isFileId(id) || !(await files.delete(req.principal!.tenantId, id))) throw fileNotFound(id);
    res.json({ id, object: 'file', deleted: true });
  });

  return router;
}

/** OpenAI's file object. Files do not expire here (the tenant's storage limit bounds them). */
export function toFileObject(f: FileRecord) {
  return {
    id: f.id,
    object: 'file' as const,
    bytes: f.bytes,
    created_at: Math.floor(f.createdAt.getTime() / 1000),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed' as const,
    status_details: null,
    expires_at: null,
  };
}

/** OpenAI's words for a missing file; another tenant's file gets exactly these. */
export const fileNotFound = (id: string) =>
  new HttpError(404, 'not_found', `No such File object: ${id.slice(0, 128)}`, { field: 'id' });

async function ownFile(files: FileRepository, req: Request): Promise<FileRecord> {
  const id = String(req.params.id);
  const file = isFileId(id) ? await files.get(req.principal!.tenantId, id) : null;
  if (!file) throw fileNotFound(id);
  return file;
}

const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(10_000).default(10_000),
  after: z.string().max(128).optional(),
  order: z.enum(['asc', 'desc']).default('desc'),
  purpose: z.string().max(64).optional(),
});

/** An upload as a file to store: purpose `batch`, one non-empty file within the limit. */
function checkUpload(upload: Upload, maxBytes: number): Omit<NewFile, 'tenantId' | 'apiKeyId'> {
  const purpose = upload.fields.get('purpose');
  const missing = (field: string) =>
    new HttpError(400, 'missing_required_parameter', `Missing required parameter: ${field}.`, { field });
  if (purpose === undefined) throw missing('purpose');
  if (purpose !== 'batch') {
    const message = `llmq stores files for the Batch API only: purpose must be "batch", not "${purpose.slice(0, 64)}".`;
    throw new HttpError(400, 'invalid_value', message, { field: 'purpose' });
  }
  const file = upload.file;
  if (file === null) throw missing('file');
  if (file.tooLarge) throw tooLarge(maxBytes);
  const content = Buffer.concat(file.chunks);
  if (content.length === 0) throw new HttpError(400, 'empty_file', 'The file is empty.', { field: 'file' });
  return { purpose, filename: file.filename, content };
}

const tooLarge = (maxBytes: number, headers?: Record<string, string>) =>
  new HttpError(413, 'file_too_large', `The file is larger than the ${maxBytes} bytes an upload may have.`, {
    field: 'file',
    ...(headers ? { headers } : {}),
  });

/** Room for the multipart framing, part headers and the small fields around the file. */
const MULTIPART_OVERHEAD = 64 * 1024;

interface Upload {
  fields: Map<string, string>;
  /** The `file` part: its bytes up to the limit, and whether it went past it. */
  file: { filename: string; chunks: Buffer[]; tooLarge: boolean } | null;
}

/**
 * Reads a multipart upload: one `file` part and small text fields. The file's bytes are kept
 * only up to `maxBytes`; past that they are read and dropped (busboy's `limit`), so memory stays
 * bounded, and the 413 is answered once the request has been read: answering while the client
 * is still sending would cut its connection, and it would see a reset instead of the error.
 * Reading is bounded too: past twice the limit the 413 is answered at once and the connection
 * closed, so a client that streams without end does not hold the server.
 */
async function readUpload(req: Request, maxBytes: number): Promise<Upload> {
  const upload: Upload = { fields: new Map(), file: null };
  await new Promise<void>((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        // busboy signals `limit` on reaching the size, not on passing it: one byte more tells them apart.
        limits: { files: 1, fileSize: maxBytes + 1, fields: 8, fieldSize: 1024, parts: 16 },
      });
    } catch (error) {
      reject(new HttpError(400, 'invalid_multipart', (error as Error).message));
      return;
    }
    bb.on('file', (name, stream, info) => {
      if (name !== 'file') {
        stream.resume();
        return;
      }
      const file = {
        filename: (info.filename || 'file').slice(0, 255),
        chunks: [] as Buffer[],
        tooLarge: false,
      };
      upload.file = file;
      stream.on('data', (chunk: Buffer) => {
        if (!file.tooLarge) file.chunks.push(chunk);
      });
      stream.on('limit', () => {
        file.tooLarge = true;
        file.chunks = [];
      });
    });
    bb.on('field', (name, value) => upload.fields.set(name, value));
    bb.on('error', (error: Error) => reject(new HttpError(400, 'invalid_multipart', error.message)));
    bb.on('close', () => resolve());
    let received = 0;
    const maxReceived = 2 * maxBytes + MULTIPART_OVERHEAD;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received <= maxReceived) return;
      req.unpipe(bb);
      req.pause();
      reject(tooLarge(maxBytes, { Connection: 'close' }));
    });
    // A client that goes away mid-upload ends the request without busboy closing.
    req.on('close', () => {
      if (!req.complete) reject(new HttpError(400, 'request_aborted', 'the upload was cut short'));
    });
    req.pipe(bb);
  });
  return upload;
}
