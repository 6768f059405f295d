// /api/v1/status (the server summary) and /api/v1/events: server-sent events every two seconds
// with the live figures of the clients a page shows (latest handshake, endpoint, rx/tx and
// their rates) and the device's totals. A page names its visible clients (?ids=...), so the
// stream stays small at 100k clients; every stream shares one cached device reading.
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import { clientState, type ClientState } from '../server/clients.js';
import { publicKeyFromPrivate } from '../server/keys.js';
import { monthOf } from '../store/repository.js';
import type { HttpContext } from './context.js';
import { liveOf } from './clients.js';

export const EVENT_INTERVAL_MS = 2000;
/** A peer whose latest handshake is this recent counts as online (a session lives 180 s). */
const ONLINE_S = 180;
const MAX_IDS = 500;
const SUMMARY_TTL_MS = 5000;

export function registerStatusRoutes(app: FastifyInstance, ctx: HttpContext, authenticate: preHandlerAsyncHookHandler): void {
  const { store } = ctx;
  let summary: { at: number; seq: number; value: Promise<Record<ClientState, number> & { total: number }> } | undefined;

  /** Clients by state: a pass over every client, cached for a few seconds unless a client changed. */
  async function counts(): Promise<Record<ClientState, number> & { total: number }> {
    const now = ctx.now();
    const seq = await store.lastChange();
    if (summary !== undefined && summary.seq === seq && now - summary.at < SUMMARY_TTL_MS) return summary.value;
    const value = (async () => {
      const [{ items }, usage] = await Promise.all([store.listClients({}), store.monthlyUsage(monthOf(now))]);
      const c = { total: items.length, active: 0, disabled: 0, expired: 0, 'over-quota': 0 };
      for (const client of items) {
        const u = usage.get(client.id);
        c[clientState(client, now, u === undefined ? 0 : u.rx + u.tx)]++;
      }
      return c;
    })();
    summary = { at: now, seq, value };
    return value;
  }

  async function deviceTotals(): Promise<{ peers: number; online: number; rx: number; tx: number }> {
    const nowS = ctx.now() / 1000;
    let online = 0;
    let rx = 0;
    let tx = 0;
    const peers = await ctx.peers();
    for (const p of peers.values()) {
      if (p.lastHandshakeSec !== 0 && nowS - p.lastHandshakeSec < ONLINE_S) online++;
      rx += Number(p.rxBytes);
      tx += Number(p.txBytes);
    }
    return { peers: peers.size, online, rx, tx };
  }

  app.get('/api/v1/status', { preHandler: authenticate, schema: { tags: ['server'], summary: 'Server summary', security: [{ bearer: [] }] } }, async () => {
    const s = ctx.server;
    const [clients, device] = await Promise.all([counts(), deviceTotals()]);
    return {
      interface: ctx.ifname, publicKey: publicKeyFromPrivate(s.privateKey), endpoint: ctx.endpoint, address: s.address,
      listenPort: s.listenPort, mtu: s.mtu, clients, device,
    };
  });

  app.get('/api/v1/events', {
    preHandler: authenticate,
    schema: {
      tags: ['server'], summary: 'Server-sent events: live figures of the listed clients every 2 s', security: [{ bearer: [] }],
      querystring: { type: 'object', additionalProperties: false, properties: { ids: { type: 'string', pattern: '^[0-9]+(,[0-9]+)*$', description: `up to ${MAX_IDS} client ids` } } },
    },
  }, async (req, reply) => {
    const raw = (req.query as { ids?: string }).ids;
    const ids = raw === undefined ? [] : raw.split(',').slice(0, MAX_IDS).map(Number);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const previous = new Map<number, { at: number; rx: number; tx: number }>();
    let stopped = false;
    const tick = async (): Promise<void> => {
      const clients = (await Promise.all(ids.map((id) => store.getClient(id)))).filter((c) => c !== undefined);
      const peers = await ctx.peers();
      const at = ctx.now();
      const rows = clients.map((c) => {
        const live = liveOf(peers.get(c.publicKey));
        const prev = previous.get(c.id);
        const rate = (now: number, then: number | undefined): number => (prev === undefined || then === undefined || now < then ? 0 : ((now - then) * 1000) / Math.max(1, at - prev.at));
        if (live !== null) previous.set(c.id, { at, rx: live.rx, tx: live.tx });
        return { id: c.id, live, rxRate: live === null ? 0 : rate(live.rx, prev?.rx), txRate: live === null ? 0 : rate(live.tx, prev?.tx) };
      });
      if (!stopped) res.write(`data: ${JSON.stringify({ at, device: await deviceTotals(), clients: rows })}\n\n`);
    };
    const send = (): void => void tick().catch((err: Error) => req.log.warn({ err: err.message }, 'event stream tick failed'));
    const timer = setInterval(send, EVENT_INTERVAL_MS);
    send();
    req.raw.on('close', () => {
      stopped = true;
      clearInterval(timer);
    });
  });
}
