// GET /api/v1/cluster: the nodes sharing the store (src/cluster/nodes.ts), as `cluster status`
// shows them. On the SQLite store of one server there are none: only a cluster's nodes
// heartbeat.
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { clusterStatus } from '../cluster/nodes.js';
import type { HttpContext } from './context.js';

export function registerClusterRoutes(app: FastifyInstance, ctx: HttpContext, authenticate: preHandlerAsyncHookHandler): void {
  app.get('/api/v1/cluster', {
    preHandler: authenticate,
    schema: { tags: ['server'], summary: 'Cluster nodes: up or down, peers, traffic, feed lag', security: [{ bearer: [] }] },
  }, async () => ({ nodes: await clusterStatus(ctx.store, ctx.now()) }));
}
