// The one place where an error class becomes an HTTP status.
import type { FastifyReply } from 'fastify';
import { BerthError, type ErrorClass } from '../util/errors.ts';

const STATUS: Record<ErrorClass, number> = {
  NotFound: 404,
  AlreadyExists: 409,
  InvalidArgument: 400,
  FailedPrecondition: 409,
  Conflict: 409,
  Unavailable: 503,
  Internal: 500,
};

export function statusFor(e: BerthError): number {
  if (e.code === 'NOT_IMPLEMENTED') return 501;
  if (e.code === 'REQUEST_TOO_LARGE') return 413;
  if (e.code === 'HEADERS_TOO_LARGE') return 431;
  if (e.code === 'REQUEST_TIMEOUT') return 408;
  if (e.code === 'EVENTS_PRUNED') return 410;
  if (e.code === 'COMMAND_NOT_FOUND' || e.code === 'COMMAND_NOT_EXECUTABLE') return 400;
  return STATUS[e.class];
}

interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message: string;
  validation?: { instancePath?: string; params?: Record<string, unknown>; message?: string }[];
  validationContext?: string;
}

export function toBerthError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const e = err as FastifyLikeError;
  if (e.validation && e.validation.length > 0) {
    const v = e.validation[0];
    const prop =
      (v?.params?.['missingProperty'] as string | undefined) ??
      (v?.params?.['additionalProperty'] as string | undefined);
    const path = (v?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
    const field = [path, prop].filter(Boolean).join('.') || e.validationContext || 'request';
    const what = v?.params?.['additionalProperty'] ? 'unknown field' : (v?.message ?? 'invalid');
    return new BerthError('INVALID_ARGUMENT', `Invalid ${field}: ${what}`, { field });
  }
  if (e.statusCode === 413) {
    return new BerthError('REQUEST_TOO_LARGE', `Invalid body: ${e.message}`, { field: 'body' });
  }
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
    return new BerthError('INVALID_ARGUMENT', `Invalid request: ${e.message}`, {
      fastifyCode: e.code,
    });
  }
  return new BerthError('INTERNAL', `Internal error: ${e.message}`);
}

export function errorReply(reply: FastifyReply, e: BerthError): FastifyReply {
  return reply.code(statusFor(e)).send({ code: e.code, message: e.message });
}
