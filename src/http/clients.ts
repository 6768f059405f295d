// /api/v1/clients: list (paged, sorted, searched), get, create, update, delete, configuration
// text, QR code as SVG, traffic history. Input is checked by JSON schemas (which also make the
// OpenAPI document) before anything is touched; a check the schema cannot express is made before
// the store is changed, so a refused request changes nothing.
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { isCidr, parseIPv4, formatIPv4 } from '../server/addresses.js';
import { clientConfigText, clientState, createClient, type ClientState } from '../server/clients.js';
import { CLIENT_NAME_PATTERN } from '../server/config.js';
import { qrSvg } from '../server/qr.js';
import { CLIENT_SORTS, ConflictError, monthOf, type ClientPatch, type ClientRecord, type ClientSort } from '../store/repository.js';
import type { Endpoint, PeerState } from '../uapi/types.js';
import type { HttpContext } from './context.js';
import { HttpError, badInput, notFound } from './errors.js';

export const MAX_PAGE = 200;
/** What each chart range reads: minute buckets for an hour or a day, hour buckets for a month. */
const RANGES = { hour: { period: 60, span: 3_600_000 }, day: { period: 60, span: 86_400_000 }, month: { period: 3600, span: 30 * 86_400_000 } } as const;

const name = { type: 'string', pattern: CLIENT_NAME_PATTERN, description: "1-32 letters, digits, '.', '_' or '-'" } as const;
const expiresAt = { type: ['string', 'null'], format: 'date-time', description: 'ISO 8601; null: never' } as const;
const quotaBytes = { type: ['integer', 'null'], minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'monthly received + sent bytes; null: none' } as const;
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } } as const;
const prefixList = { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } } as const;

const clientJson = {
  type: 'object',
  properties: {
    id: { type: 'integer' }, name: { type: 'string' }, address: { type: ['string', 'null'] }, publicKey: { type: 'string' },
    allowedIps: { type: 'array', items: { type: 'string' } }, dns: { type: ['array', 'null'], items: { type: 'string' } },
    routes: { type: ['array', 'null'], items: { type: 'string' } }, enabled: { type: 'boolean' }, expiresAt: { type: ['string', 'null'] },
    quotaBytes: { type: ['integer', 'null'] }, createdAt: { type: 'string' }, state: { type: 'string', enum: ['active', 'disabled', 'expired', 'over-quota'] },
    usage: { type: 'object', properties: { month: { type: 'string' }, rx: { type: 'integer' }, tx: { type: 'integer' } } },
    live: {
      type: ['object', 'null'],
      properties: { latestHandshake: { type: ['string', 'null'] }, endpoint: { type: ['string', 'null'] }, rx: { type: 'integer' }, tx: { type: 'integer' } },
    },
  },
} as const;

export interface ClientJson {
  id: number; name: string; address: string | null; publicKey: string; allowedIps: string[]; dns: string[] | null; routes: string[] | null;
  enabled: boolean; expiresAt: string | null; quotaBytes: number | null; createdAt: string; state: ClientState;
  usage: { month: string; rx: number; tx: number };
  live: { latestHandshake: string | null; endpoint: string | null; rx: number; tx: number } | null;
}

/** An endpoint as `wg show` prints it; IPv6 compressed by the URL parser's canonical form. */
function endpointText(ep: Endpoint): string {
  if (ep.family === 4) return `${[...ep.addr].join('.')}:${ep.port}`;
  const groups = Array.from({ length: 8 }, (_, i) => ((ep.addr[2 * i]! << 8) | ep.addr[2 * i + 1]!).toString(16));
  return `${new URL(`http://[${groups.join(':')}]/`).hostname}:${ep.port}`;
}

export function liveOf(p: PeerState | undefined): ClientJson['live'] {
  if (p === undefined) return null;
  return {
    latestHandshake: p.lastHandshakeSec === 0 ? null : new Date(p.lastHandshakeSec * 1000).toISOString(),
    endpoint: p.endpoint === undefined ? null : endpointText(p.endpoint), rx: Number(p.rxBytes), tx: Number(p.txBytes),
  };
}

export function registerClientRoutes(app: FastifyInstance, ctx: HttpContext, authenticate: preHandlerAsyncHookHandler): void {
  const { store } = ctx;

  async function toJson(clients: readonly ClientRecord[]): Promise<ClientJson[]> {
    const now = ctx.now();
    const month = monthOf(now);
    const [usage, peers] = await Promise.all([store.monthlyUsage(month, clients.map((c) => c.id)), ctx.peers()]);
    return clients.map((c) => {
      const u = usage.get(c.id) ?? { rx: 0, tx: 0 };
      return {
        id: c.id, name: c.name, address: c.address === undefined ? null : formatIPv4(c.address), publicKey: c.publicKey,
        allowedIps: c.allowedIps, dns: c.dns ?? null, routes: c.routes ?? null, enabled: c.enabled,
        expiresAt: c.expiresAt === undefined ? null : new Date(c.expiresAt).toISOString(), quotaBytes: c.quotaBytes ?? null,
        createdAt: new Date(c.createdAt).toISOString(), state: clientState(c, now, u.rx + u.tx), usage: { month, ...u },
        live: liveOf(peers.get(c.publicKey)),
      };
    });
  }

  async function load(req: FastifyRequest): Promise<ClientRecord> {
    const { id } = req.params as { id: number };
    const c = await store.getClient(id);
    if (c === undefined) throw notFound(`client ${id}`);
    return c;
  }

  const time = (v: string | null | undefined): number | null | undefined => (v === undefined || v === null ? v : Date.parse(v));

  /** Checks allowedIps against what the schema cannot say: prefixes, and the client's own address kept. */
  function checkAllowedIps(c: ClientRecord, list: string[]): string[] {
    const bad = list.find((a) => !isCidr(a));
    if (bad !== undefined) throw badInput('allowedIps', `allowedIps: ${JSON.stringify(bad)} is not an IP prefix like 10.0.0.0/8 or fd00::/64`);
    if (c.address !== undefined) {
      const own = `${formatIPv4(c.address)}/32`;
      if (!list.includes(own)) throw badInput('allowedIps', `allowedIps must keep the client's own address ${own}`);
    }
    return list;
  }

  const opts = (summary: string, schema: Record<string, unknown> = {}) => ({ preHandler: authenticate, schema: { tags: ['clients'], summary, security: [{ bearer: [] }], ...schema } });

  app.get('/api/v1/clients', opts('List clients, paged, sorted and searched', {
    querystring: {
      type: 'object', additionalProperties: false,
      properties: {
        offset: { type: 'integer', minimum: 0, default: 0 }, limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: 50 },
        sort: { type: 'string', enum: [...CLIENT_SORTS], default: 'name' }, order: { type: 'string', enum: ['asc', 'desc'], default: 'asc' },
        q: { type: 'string', maxLength: 64, description: 'part of a name, an exact address, or the start of a public key' },
      },
    },
    response: { 200: { type: 'object', properties: { total: { type: 'integer' }, offset: { type: 'integer' }, limit: { type: 'integer' }, items: { type: 'array', items: clientJson } } } },
  }), async (req) => {
    const q = req.query as { offset: number; limit: number; sort: ClientSort; order: 'asc' | 'desc'; q?: string };
    const search = q.q?.trim();
    const address = search === undefined ? null : parseIPv4(search);
    const { total, items } = await store.listClients({
      ...(search ? { search } : {}), ...(address !== null ? { searchAddress: address } : {}),
      sort: q.sort, descending: q.order === 'desc', offset: q.offset, limit: q.limit,
    });
    return { total, offset: q.offset, limit: q.limit, items: await toJson(items) };
  });

  app.get('/api/v1/clients/:id', opts('One client', { params: idParams, response: { 200: clientJson } }), async (req) => (await toJson([await load(req)]))[0]);

  app.post('/api/v1/clients', opts('Create a client: next free address, new keys and preshared key', {
    body: {
      type: 'object', additionalProperties: false, required: ['name'],
      properties: { name, enabled: { type: 'boolean' }, expiresAt, quotaBytes, dns: prefixList, routes: prefixList },
    },
    response: { 201: clientJson },
  }), async (req, reply) => {
    const b = req.body as { name: string; enabled?: boolean; expiresAt?: string | null; quotaBytes?: number | null; dns?: string[]; routes?: string[] };
    const badRoute = b.routes?.find((r) => !isCidr(r));
    if (badRoute !== undefined) throw badInput('routes', `routes: ${JSON.stringify(badRoute)} is not an IP prefix`);
    let c: ClientRecord;
    try {
      c = await createClient(store, ctx.server, {
        name: b.name, ...(b.enabled !== undefined ? { enabled: b.enabled } : {}),
        ...(b.expiresAt ? { expiresAt: Date.parse(b.expiresAt) } : {}), ...(b.quotaBytes ? { quotaBytes: b.quotaBytes } : {}),
        ...(b.dns !== undefined ? { dns: b.dns } : {}), ...(b.routes !== undefined ? { routes: b.routes } : {}),
      });
    } catch (err) {
      if (err instanceof ConflictError && err.field === 'address') throw new HttpError(409, 'full', `no free address left in ${ctx.server.address}`);
      throw err;
    }
    await ctx.changed();
    return reply.code(201).send((await toJson([(await store.getClient(c.id)) ?? c]))[0]);
  });

  app.patch('/api/v1/clients/:id', opts('Change a client: name, enabled, expiry, quota, allowed IPs', {
    params: idParams,
    body: {
      type: 'object', additionalProperties: false, minProperties: 1,
      properties: { name, enabled: { type: 'boolean' }, expiresAt, quotaBytes, allowedIps: { ...prefixList, minItems: 1 } },
    },
    response: { 200: clientJson },
  }), async (req) => {
    const c = await load(req);
    const b = req.body as { name?: string; enabled?: boolean; expiresAt?: string | null; quotaBytes?: number | null; allowedIps?: string[] };
    const patch: ClientPatch = {};
    if (b.name !== undefined) patch.name = b.name;
    if (b.enabled !== undefined) patch.enabled = b.enabled;
    if (b.expiresAt !== undefined) patch.expiresAt = time(b.expiresAt)!;
    if (b.quotaBytes !== undefined) patch.quotaBytes = b.quotaBytes;
    if (b.allowedIps !== undefined) patch.allowedIps = checkAllowedIps(c, b.allowedIps);
    const updated = await store.updateClient(c.id, patch);
    if (updated === undefined) throw notFound(`client ${c.id}`);
    await ctx.changed();
    return (await toJson([updated]))[0];
  });

  app.delete('/api/v1/clients/:id', opts('Delete a client (removed from the device at once)', { params: idParams }), async (req, reply) => {
    const c = await load(req);
    await store.deleteClient(c.id);
    await ctx.changed();
    return reply.code(204).send();
  });

  app.get('/api/v1/clients/:id/config', opts("The client's wg-quick configuration (holds its private key)", { params: idParams }), async (req, reply) => {
    const c = await load(req);
    return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(configOf(c));
  });

  app.get('/api/v1/clients/:id/qr.svg', opts('The configuration as a QR code for the WireGuard apps', { params: idParams }), async (req, reply) => {
    const c = await load(req);
    return reply.type('image/svg+xml').header('cache-control', 'no-store').send(await qrSvg(configOf(c)));
  });

  app.get('/api/v1/clients/:id/traffic', opts('Traffic history: minute points for an hour or a day, hour points for a month', {
    params: idParams,
    querystring: { type: 'object', additionalProperties: false, properties: { range: { type: 'string', enum: Object.keys(RANGES), default: 'day' } } },
  }), async (req) => {
    const c = await load(req);
    const { range } = req.query as { range: keyof typeof RANGES };
    const r = RANGES[range];
    const now = ctx.now();
    const points = await store.traffic(c.id, r.period, now - r.span);
    const month = monthOf(now);
    const usage = (await store.monthlyUsage(month, [c.id])).get(c.id) ?? { rx: 0, tx: 0 };
    return { range, period: r.period, from: now - r.span, to: now, points: points.map((p) => [p.bucket, p.rx, p.tx]), month: { month, ...usage } };
  });

  function configOf(c: ClientRecord): string {
    try {
      return clientConfigText(ctx.server, c, ctx.endpoint);
    } catch (err) {
      throw new HttpError(409, 'no_config', (err as Error).message);
    }
  }
}
