// The HTTP API of `up --web` without root: the daemon's server side over a fake device behind a
// real UAPI socket. Every route, with a token, without one, with a wrong or revoked one; bad
// input answered 400 naming the field and changing nothing; changes reaching the device live;
// traffic samples, quotas and expiry; sessions, CSRF and rate limits.
process.env.WG_TS_TRAFFIC_INTERVAL = '0.2';
import { test } from 'node:test';
import { existsSync, readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { hash } from '@node-rs/argon2';
import * as OTPAuth from 'otpauth';
import { SETUP_META, hashSecret } from '../src/server/meta.js';
import { keyHex } from '../src/server/keys.js';
import { startFixture, type Fixture } from './server-fixture.js';
import { waitFor } from './interop/harness.js';

const onDevice = (f: Fixture, publicKey: string): boolean => f.device.peers.has(keyHex(publicKey));

test('API: clients list, search, sort, paging; get; 401 without or with a wrong token', async (t) => {
  const f = await startFixture({ clients: 12 });
  t.after(() => f.close());
  const none = await f.api('GET', '/api/v1/clients', undefined, {});
  assert.equal(none.status, 401);
  assert.equal(none.json.error.code, 'unauthorized');
  assert.equal((await f.api('GET', '/api/v1/clients', undefined, { authorization: 'Bearer nope' })).status, 401);
  assert.equal((await f.api('GET', '/api/v1/clients', undefined, { authorization: 'Basic x' })).status, 401);

  const page = await f.api('GET', '/api/v1/clients?limit=5&offset=5&sort=address');
  assert.equal(page.status, 200);
  assert.equal(page.json.total, 12);
  assert.deepEqual(page.json.items.map((c: { address: string }) => c.address), ['10.8.0.7', '10.8.0.8', '10.8.0.9', '10.8.0.10', '10.8.0.11']);
  const desc = await f.api('GET', '/api/v1/clients?limit=2&sort=name&order=desc');
  assert.deepEqual(desc.json.items.map((c: { name: string }) => c.name), ['client9', 'client8']);
  assert.deepEqual((await f.api('GET', '/api/v1/clients?q=ENT1')).json.items.map((c: { name: string }) => c.name), ['client1', 'client10', 'client11', 'client12']);
  assert.deepEqual((await f.api('GET', '/api/v1/clients?q=10.8.0.4')).json.items.map((c: { name: string }) => c.name), ['client3']);
  const one = page.json.items[0];
  assert.deepEqual((await f.api('GET', `/api/v1/clients?q=${encodeURIComponent(one.publicKey.slice(0, 10))}`)).json.items.map((c: { id: number }) => c.id), [one.id]);
  const got = await f.api('GET', `/api/v1/clients/${one.id}`);
  assert.equal(got.json.name, one.name);
  assert.equal(got.json.state, 'active');
  assert.ok(onDevice(f, one.publicKey), 'every active client is on the device after start');
  assert.equal((await f.api('GET', '/api/v1/clients/9999')).status, 404);

  const bad = await f.api('GET', '/api/v1/clients?limit=1000');
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.field, 'limit');
  assert.equal((await f.api('GET', '/api/v1/clients?sort=bogus')).json.error.field, 'sort');
  assert.equal((await f.api('GET', '/api/v1/clients?extra=1')).json.error.field, 'extra');
});

test('API: create, update, delete reach the device live; config and QR; bad input changes nothing', async (t) => {
  const f = await startFixture({ clients: 1 });
  t.after(() => f.close());
  const created = await f.api('POST', '/api/v1/clients', { name: 'alice', quotaBytes: 10_000_000 });
  assert.equal(created.status, 201);
  const alice = created.json;
  assert.equal(alice.address, '10.8.0.3');
  assert.equal(alice.quotaBytes, 10_000_000);
  assert.ok(onDevice(f, alice.publicKey), 'created: on the device when the answer comes');

  const config = await f.api('GET', `/api/v1/clients/${alice.id}/config`);
  assert.match(config.headers.get('content-type')!, /^text\/plain/);
  assert.match(config.text, /^\[Interface\]\nPrivateKey = \S{44}\nAddress = 10\.8\.0\.3\/32\n\n\[Peer\]\nPublicKey = \S{44}\nPresharedKey = \S{44}\nEndpoint = vpn\.example\.com:51820\n/);
  const qr = await f.api('GET', `/api/v1/clients/${alice.id}/qr.svg`);
  assert.equal(qr.headers.get('content-type'), 'image/svg+xml');
  assert.match(qr.text, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);

  const before = (await f.api('GET', `/api/v1/clients/${alice.id}`)).json;
  const cases: [string, string, unknown, string][] = [
    ['POST', '/api/v1/clients', { name: 'a b' }, 'name'],
    ['POST', '/api/v1/clients', {}, 'name'],
    ['POST', '/api/v1/clients', { name: 'ok', colour: 'red' }, 'colour'],
    ['POST', '/api/v1/clients', { name: 'ok', routes: ['10.0.0.0/33'] }, 'routes'],
    ['POST', '/api/v1/clients', { name: 'ok', expiresAt: 'tomorrow' }, 'expiresAt'],
    ['PATCH', `/api/v1/clients/${alice.id}`, { quotaBytes: -1 }, 'quotaBytes'],
    ['PATCH', `/api/v1/clients/${alice.id}`, { enabled: 'yes' }, 'enabled'],
    ['PATCH', `/api/v1/clients/${alice.id}`, { allowedIps: ['10.9.0.0/16'] }, 'allowedIps'],
    ['PATCH', `/api/v1/clients/${alice.id}`, { allowedIps: ['10.8.0.3/32', 'x'] }, 'allowedIps'],
    ['PATCH', `/api/v1/clients/${alice.id}`, { name: 'client1' }, 'name'],
    ['PATCH', '/api/v1/clients/abc', { enabled: true }, 'id'],
  ];
  for (const [method, path, body, field] of cases) {
    const r = await f.api(method, path, body);
    assert.ok(r.status === 400 || r.status === 409, `${method} ${JSON.stringify(body)}: ${r.status}`);
    assert.equal(r.json.error.field, field, `${method} ${JSON.stringify(body)}: ${r.text}`);
  }
  assert.deepEqual((await f.api('GET', `/api/v1/clients/${alice.id}`)).json, before, 'the refused requests changed nothing');
  assert.equal((await f.api('GET', '/api/v1/clients')).json.total, 2);

  const renamed = await f.api('PATCH', `/api/v1/clients/${alice.id}`, { name: 'alice2', allowedIps: ['10.8.0.3/32', 'fd00::3/128'] });
  assert.equal(renamed.status, 200);
  assert.deepEqual(renamed.json.allowedIps, ['10.8.0.3/32', 'fd00::3/128']);
  assert.equal(f.device.peers.get(keyHex(alice.publicKey))!.allowedIps.length, 2, 'the new allowed IPs are on the device');
  assert.equal((await f.api('PATCH', `/api/v1/clients/${alice.id}`, { enabled: false })).json.state, 'disabled');
  assert.ok(!onDevice(f, alice.publicKey), 'disabled: gone from the device');
  assert.equal((await f.api('PATCH', `/api/v1/clients/${alice.id}`, { enabled: true })).json.state, 'active');
  assert.ok(onDevice(f, alice.publicKey), 'enabled: back');
  const past = new Date(Date.now() - 60_000).toISOString();
  const expired = await f.api('PATCH', `/api/v1/clients/${alice.id}`, { expiresAt: past });
  assert.equal(expired.json.state, 'expired');
  assert.ok(!onDevice(f, alice.publicKey), 'expired: gone from the device, kept in the store');
  assert.equal((await f.api('PATCH', `/api/v1/clients/${alice.id}`, { expiresAt: new Date(Date.now() + 3_600_000).toISOString() })).json.state, 'active');
  assert.ok(onDevice(f, alice.publicKey), 'a later date re-enables it');

  // An expiry that passes while the daemon runs is enforced at the next sample.
  await f.api('PATCH', `/api/v1/clients/${alice.id}`, { expiresAt: new Date(Date.now() + 300).toISOString() });
  await waitFor('expiry enforced', () => !onDevice(f, alice.publicKey), 3000);
  await f.api('PATCH', `/api/v1/clients/${alice.id}`, { expiresAt: null });

  assert.equal((await f.api('DELETE', `/api/v1/clients/${alice.id}`)).status, 204);
  assert.ok(!onDevice(f, alice.publicKey), 'deleted: gone from the device');
  assert.equal((await f.api('GET', `/api/v1/clients/${alice.id}`)).status, 404);
  assert.equal((await f.api('DELETE', `/api/v1/clients/${alice.id}`)).status, 404);
  // The export follows API changes.
  const exported = (): string => (existsSync(f.paths.config) ? readFileSync(f.paths.config, 'utf8') : '');
  await waitFor('export rewritten', () => exported().includes('# Name = client1') && !exported().includes(alice.publicKey), 3000);
});

test('API: traffic deltas in the history and the month; over quota disables until next month; status', async (t) => {
  const f = await startFixture({ clients: 2 });
  t.after(() => f.close());
  const [c1, c2] = (await f.api('GET', '/api/v1/clients?sort=name')).json.items;
  const peer = f.device.peers.get(keyHex(c1.publicKey))!;
  peer.rxBytes = 1000n;
  peer.txBytes = 2000n;
  await waitFor('first sample', async () => (await f.api('GET', `/api/v1/clients/${c1.id}/traffic?range=hour`)).json.month.rx === 1000, 3000);
  peer.rxBytes = 1500n;
  peer.txBytes = 2100n;
  await waitFor('second sample', async () => (await f.api('GET', `/api/v1/clients/${c1.id}/traffic?range=hour`)).json.month.rx === 1500, 3000);
  // The device restarts its counters (a daemon restart, a re-created peer): deltas from zero.
  peer.rxBytes = 100n;
  peer.txBytes = 0n;
  await waitFor('sample after a reset', async () => (await f.api('GET', `/api/v1/clients/${c1.id}/traffic?range=hour`)).json.month.rx === 1600, 3000);
  const tr = (await f.api('GET', `/api/v1/clients/${c1.id}/traffic?range=day`)).json;
  assert.equal(tr.period, 60);
  assert.ok(tr.points.length >= 1);
  assert.deepEqual([tr.points.reduce((s: number, p: number[]) => s + p[1]!, 0), tr.points.reduce((s: number, p: number[]) => s + p[2]!, 0)], [1600, 2100]);
  assert.equal((await f.api('GET', `/api/v1/clients/${c1.id}/traffic?range=month`)).json.period, 3600);
  assert.equal((await f.api('GET', `/api/v1/clients/${c1.id}/traffic?range=year`)).json.error.field, 'range');

  const over = await f.api('PATCH', `/api/v1/clients/${c1.id}`, { quotaBytes: 3000 });
  assert.equal(over.json.state, 'over-quota');
  assert.ok(!onDevice(f, c1.publicKey), 'over quota: removed from the device');
  assert.equal((await f.api('PATCH', `/api/v1/clients/${c1.id}`, { quotaBytes: null })).json.state, 'active');
  assert.ok(onDevice(f, c1.publicKey));

  const status = (await f.api('GET', '/api/v1/status')).json;
  assert.equal(status.interface, f.ifname);
  assert.deepEqual(status.clients, { total: 2, active: 2, disabled: 0, expired: 0, 'over-quota': 0 });
  assert.equal(status.device.peers, 2);
  assert.equal(status.endpoint, 'vpn.example.com:51820');
  void c2;

  // Server-sent events: the figures of the listed clients.
  const ac = new AbortController();
  const res = await fetch(`${f.base}/api/v1/events?ids=${c1.id},${c2.id}`, { headers: { authorization: `Bearer ${f.token}` }, signal: ac.signal });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  let text = '';
  let event: { clients: { id: number; live: { rx: number } | null }[] } | undefined;
  // Live figures come from the latest device reading (at most a second old): wait for the one after the re-creation.
  while (event === undefined || event.clients.some((c) => c.live === null || c.live.rx !== 0)) {
    while (!text.includes('\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    event = JSON.parse(/^data: (.*)$/m.exec(text)![1]!);
    text = text.slice(text.indexOf('\n\n') + 2);
  }
  ac.abort();
  assert.deepEqual(event.clients.map((c) => c.id), [c1.id, c2.id]);
  // c1's peer was re-created by the quota round trip: the device counts from zero again.
  assert.deepEqual(event.clients.map((c) => c.live?.rx), [0, 0]);
});

test('API: tokens revoked at once, OpenAPI document, failure rate limit', async (t) => {
  const f = await startFixture({ clients: 1 });
  t.after(() => f.close());
  const doc = await f.api('GET', '/api/v1/openapi.json', undefined, {});
  assert.equal(doc.status, 200);
  assert.equal(doc.json.openapi.slice(0, 2), '3.');
  for (const p of ['/api/v1/clients', '/api/v1/clients/{id}', '/api/v1/clients/{id}/config', '/api/v1/clients/{id}/qr.svg', '/api/v1/clients/{id}/traffic', '/api/v1/status', '/api/v1/session']) {
    assert.ok(doc.json.paths[p], p);
  }
  assert.equal((await f.api('GET', '/api/v1/status')).status, 200);
  assert.equal(await f.store.revokeToken('test', Date.now()), true);
  const revoked = await f.api('GET', '/api/v1/status');
  assert.equal(revoked.status, 401);
  assert.match(revoked.json.error.message, /revoked/);
  let last = 0;
  for (let i = 0; i < 25; i++) last = (await f.api('GET', '/api/v1/status', undefined, { authorization: `Bearer wrong${i}` })).status;
  assert.equal(last, 429, 'wrong tokens are rate limited');
});

test('API: setup link, login (argon2id), wrong password refused, CSRF header, logout revokes, login rate limit', async (t) => {
  const f = await startFixture({ clients: 1 });
  t.after(() => f.close());
  await f.store.setMeta(SETUP_META, JSON.stringify({ hash: hashSecret('setup-secret'), expiresAt: Date.now() + 60_000 }));
  assert.deepEqual((await f.api('GET', '/api/v1/setup', undefined, {})).json, { needed: true });
  assert.equal((await f.api('POST', '/api/v1/setup', { token: 'wrong', username: 'admin', password: 'correct horse' }, {})).status, 403);
  const short = await f.api('POST', '/api/v1/setup', { token: 'setup-secret', username: 'admin', password: 'short' }, {});
  assert.equal(short.json.error.field, 'password');
  const setup = await f.api('POST', '/api/v1/setup', { token: 'setup-secret', username: 'admin', password: 'correct horse' }, {});
  assert.equal(setup.status, 201);
  assert.match(setup.headers.get('set-cookie')!, /^wgts_session=[\w-]+; Max-Age=43200; Path=\/; HttpOnly; SameSite=Strict$/);
  assert.equal((await f.api('POST', '/api/v1/setup', { token: 'setup-secret', username: 'admin2', password: 'correct horse' }, {})).status, 403, 'one-time');
  assert.match((await f.store.getAdmin('admin'))!.passwordHash, /^\$argon2id\$/);

  const wrong = await f.api('POST', '/api/v1/session', { username: 'admin', password: 'wrong password' }, {});
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('set-cookie'), null);
  const login = await f.api('POST', '/api/v1/session', { username: 'admin', password: 'correct horse' }, {});
  assert.equal(login.status, 200);
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
  assert.equal((await f.api('GET', '/api/v1/clients', undefined, { cookie })).status, 200);
  const csrf = await f.api('POST', '/api/v1/clients', { name: 'x' }, { cookie });
  assert.equal(csrf.status, 403);
  assert.equal(csrf.json.error.code, 'csrf');
  assert.equal((await f.api('POST', '/api/v1/clients', { name: 'x' }, { cookie, 'x-requested-with': 'wireguard-ts', origin: 'http://evil.example' })).status, 403);
  assert.equal((await f.api('POST', '/api/v1/clients', { name: 'x' }, { cookie, 'x-requested-with': 'wireguard-ts' })).status, 201);
  assert.equal((await f.api('DELETE', '/api/v1/session', undefined, { cookie, 'x-requested-with': 'wireguard-ts' })).status, 204);
  assert.equal((await f.api('GET', '/api/v1/clients', undefined, { cookie })).status, 401, 'logout revokes the session');

  // The page: strict CSP on every answer.
  const page = await fetch(`${f.base}/`);
  assert.match(await page.text(), /<title>wireguard-ts<\/title>/);
  const csp = page.headers.get('content-security-policy')!;
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);

  let last = 0;
  for (let i = 0; i < 12; i++) last = (await f.api('POST', '/api/v1/session', { username: 'admin', password: `guess${i}` }, {})).status;
  assert.equal(last, 429, 'login attempts are rate limited');
});

test('API: two-factor login: enroll with a confirmed code, required at login, off only with a code; not for tokens', async (t) => {
  const f = await startFixture({ clients: 1 });
  t.after(() => f.close());
  await f.store.createAdmin('admin', await hash('correct horse'));
  const logIn = (body: Record<string, string> = {}) => f.api('POST', '/api/v1/session', { username: 'admin', password: 'correct horse', ...body }, {});
  const cookie = (await logIn()).headers.get('set-cookie')!.split(';')[0]!;
  const as = { cookie, 'x-requested-with': 'wireguard-ts' };
  assert.equal((await f.api('POST', '/api/v1/totp')).json.error.code, 'admin_only', 'a bearer token has no second factor to set');

  const enrolled = await f.api('POST', '/api/v1/totp', undefined, as);
  assert.equal(enrolled.headers.get('cache-control'), 'no-store', 'the secret is kept by no cache');
  const enroll = enrolled.json;
  const otp = OTPAuth.URI.parse(enroll.uri) as OTPAuth.TOTP;
  assert.equal(otp.secret.base32, enroll.secret);
  assert.match(enroll.qr, /^<svg /);
  const wrong = String((Number(otp.generate()) + 500_000) % 1_000_000).padStart(6, '0');
  const refused = await f.api('POST', '/api/v1/totp/confirm', { secret: enroll.secret, code: wrong }, as);
  assert.equal(refused.json.error.field, 'code');
  assert.equal((await f.store.getAdmin('admin'))!.totpSecret, undefined, 'a wrong code turns nothing on');
  assert.equal((await f.api('POST', '/api/v1/totp/confirm', { secret: enroll.secret, code: otp.generate() }, as)).status, 200);
  assert.equal((await f.api('POST', '/api/v1/totp', undefined, as)).json.error.code, 'totp_on', 'no second enrollment while on');

  assert.equal((await logIn()).json.error.code, 'totp_required');
  assert.equal((await logIn({ totp: wrong })).status, 401);
  assert.equal((await logIn({ totp: otp.generate() })).status, 200);

  assert.equal((await f.api('DELETE', '/api/v1/totp', {}, as)).json.error.field, 'code');
  assert.equal((await f.api('DELETE', '/api/v1/totp', { code: wrong }, as)).json.error.field, 'code');
  assert.notEqual((await f.store.getAdmin('admin'))!.totpSecret, undefined, 'a wrong code turns nothing off');
  assert.equal((await f.api('DELETE', '/api/v1/totp', { code: otp.generate() }, as)).status, 200);
  assert.equal((await logIn()).status, 200, 'the password alone again');
  assert.equal((await f.api('DELETE', '/api/v1/totp', { code: otp.generate() }, as)).json.error.code, 'totp_off');
});
