// One shape for every error answer: {"error": {"code", "message", "field"?}}, with the field
// named whenever one input is at fault, so a client (or the page) can point at it. Schema
// validation errors of fastify are turned into that shape here.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ConflictError } from '../store/repository.js';

export class HttpError extends Error {
  constructor(readonly statusCode: number, readonly code: string, message: string, readonly field?: string) {
    super(message);
  }
}

export const badInput = (field: string, message: string): HttpError => new HttpError(400, 'invalid', message, field);
export const notFound = (what: string): HttpError => new HttpError(404, 'not_found', `${what} does not exist`);

/** "/quotaBytes" or a missing/extra property -> the field's name. */
function fieldOf(e: FastifyError): string | undefined {
  const v = e.validation?.[0];
  if (v === undefined) return undefined;
  const params = v.params as { missingProperty?: string; additionalProperty?: string };
  const path = v.instancePath.replace(/^\//, '').split('/')[0];
  return params.missingProperty ?? params.additionalProperty ?? (path !== '' ? path : undefined);
}

export function errorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  if (err.validation !== undefined) {
    const field = fieldOf(err);
    const v = err.validation[0]!;
    const params = v.params as { additionalProperty?: string };
    const message = params.additionalProperty !== undefined ? `${params.additionalProperty} is not a known field` : `${field ?? err.validationContext} ${v.message ?? 'is invalid'}`;
    void reply.code(400).send({ error: { code: 'invalid', message, ...(field !== undefined ? { field } : {}) } });
    return;
  }
  if (err instanceof HttpError) {
    void reply.code(err.statusCode).send({ error: { code: err.code, message: err.message, ...(err.field !== undefined ? { field: err.field } : {}) } });
    return;
  }
  if (err instanceof ConflictError) {
    void reply.code(409).send({ error: { code: 'conflict', message: err.message, field: err.field } });
    return;
  }
  const status = err.statusCode ?? 500;
  if (status >= 500) req.log.error({ err: err.message }, 'request failed');
  void reply.code(status).send({ error: { code: status === 429 ? 'rate_limited' : status >= 500 ? 'internal' : 'bad_request', message: status >= 500 ? 'internal error' : err.message } });
}
