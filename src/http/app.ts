// The HTTP server of `up --web`: the /api/v1 API (bearer tokens or the page's session), its
// OpenAPI document at /api/v1/openapi.json, and the web admin page (plain files from web/, no
// build step) on the same origin, behind a strict Content-Security-Policy.
import cookie from '@fastify/cookie';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { registerAuth } from './auth.js';
import { registerClientRoutes } from './clients.js';
import { registerClusterRoutes } from './cluster.js';
import type { HttpContext, HttpOptions } from './context.js';
import { errorHandler } from './errors.js';
import { registerStatusRoutes } from './status.js';

const require = createRequire(import.meta.url);
const UPLOT_DIR = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
/** Request bodies are small JSON objects; anything larger is refused before parsing. */
const BODY_LIMIT = 16 * 1024;

export async function buildApp(ctx: HttpContext, opts: HttpOptions, logger: FastifyInstance['log'] | false = false): Promise<FastifyInstance> {
  const app = Fastify({
    ...(logger === false ? { logger: false } : { loggerInstance: logger }),
    bodyLimit: BODY_LIMIT,
    // Event streams never end by themselves: closing the server (the daemon stopping) cuts them.
    forceCloseConnections: true,
    trustProxy: opts.behindTls,
    // Unknown fields are refused (additionalProperties: false), not silently dropped.
    ajv: { customOptions: { removeAdditional: false, allErrors: false } },
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => void reply.code(404).send({ error: { code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` } }));
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'", 'data:'], connectSrc: ["'self'"],
        fontSrc: ["'self'"], objectSrc: ["'none'"], baseUri: ["'none'"], frameAncestors: ["'none'"], formAction: ["'self'"],
        ...(opts.behindTls ? { upgradeInsecureRequests: [] } : {}),
      },
    },
    hsts: opts.behindTls,
    referrerPolicy: { policy: 'no-referrer' },
  });
  await app.register(cookie);
  await app.register(rateLimit, { global: false });
  await app.register(swagger, {
    openapi: {
      info: { title: 'wireguard-ts server API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: '`wireguard-ts token create NAME`' } } },
    },
  });
  const authenticate = registerAuth(app, ctx, opts);
  registerClientRoutes(app, ctx, authenticate);
  registerStatusRoutes(app, ctx, authenticate);
  registerClusterRoutes(app, ctx, authenticate);
  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  await app.register(fastifyStatic, { root: opts.webRoot, prefix: '/', index: 'index.html' });
  await app.register(fastifyStatic, { root: UPLOT_DIR, prefix: '/vendor/', decorateReply: false, allowedPath: (p) => /^\/uPlot\.(iife\.min\.js|min\.css)$/.test(p) });
  return app;
}
