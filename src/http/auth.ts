// Who may call the API: an administrator with a session cookie (the web page) or a bearer token
// (`wireguard-ts token create NAME`). Both are random secrets of which the store keeps only the
// SHA-256; passwords are argon2id; TOTP is optional per administrator, turned on by confirming
// a code of a new secret and off with a code of the current one.
//
// - Sessions: cookie `wgts_session`, HttpOnly, SameSite=Strict, Secure behind TLS, 12 hours,
//   revoked by logout (the row goes). Requests that change something with a cookie must carry
//   `X-Requested-With: wireguard-ts` (a header no cross-site form or image can send, and that a
//   cross-origin script cannot add without a CORS preflight we never answer) and, when the
//   browser sends Origin, come from this origin: CSRF is refused twice over.
// - Rate limits: login and setup take 10 attempts per minute per address; wrong bearer tokens or
//   dead session cookies 20 per minute, after which even a right one waits (429).
// - The first administrator comes from the one-time setup link that `up --web` prints.
import { hash, verify } from '@node-rs/argon2';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { randomBytes } from 'node:crypto';
import * as OTPAuth from 'otpauth';
import { SETUP_META, hashSecret } from '../server/meta.js';
import { qrSvg } from '../server/qr.js';
import type { Admin } from '../store/repository.js';
import type { HttpContext, HttpOptions } from './context.js';
import { HttpError, badInput } from './errors.js';

export type Principal = { kind: 'admin'; adminId: number; username: string } | { kind: 'token'; name: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export const SESSION_COOKIE = 'wgts_session';
export const CSRF_HEADER = 'x-requested-with';
export const CSRF_VALUE = 'wireguard-ts';
const SESSION_TTL_MS = 12 * 3_600_000;
const MIN_PASSWORD = 10;
const LOGIN_LIMIT = { max: 10, timeWindow: '1 minute' };
const FAILURE_LIMIT = { max: 20, timeWindow: '1 minute' };
/** Verified against when the user does not exist, so both answers take as long. */
const DUMMY_HASH = await hash(randomBytes(16).toString('hex'));

const unauthorized = (message = 'log in or send a bearer token'): HttpError => new HttpError(401, 'unauthorized', message);

function totpFor(username: string, secret: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: 'wireguard-ts', label: username, secret: OTPAuth.Secret.fromBase32(secret) });
}

/** Whether `code` is the secret's code now, or of the period either side (clocks drift, people type slowly). */
const codeMatches = (username: string, secret: string, code: string): boolean => totpFor(username, secret).validate({ token: code, window: 1 }) !== null;

const totpCode = { type: 'string', pattern: '^[0-9]{6}$' } as const;

const credentialsSchema = {
  type: 'object', additionalProperties: false, required: ['username', 'password'],
  properties: {
    username: { type: 'string', minLength: 1, maxLength: 64 },
    password: { type: 'string', minLength: 1, maxLength: 1024 },
    totp: totpCode,
  },
} as const;

/** Registers the session routes; returns the hook that authenticates every other API route. */
export function registerAuth(app: FastifyInstance, ctx: HttpContext, opts: HttpOptions): preHandlerAsyncHookHandler {
  const { store } = ctx;
  const failureLimit = app.rateLimit({ ...FAILURE_LIMIT, keyGenerator: (req) => `auth-failure:${req.ip}` });

  async function startSession(reply: FastifyReply, adminId: number): Promise<void> {
    const id = randomBytes(32).toString('base64url');
    await store.createSession(hashSecret(id), adminId, ctx.now() + SESSION_TTL_MS);
    void reply.setCookie(SESSION_COOKIE, id, { httpOnly: true, sameSite: 'strict', secure: opts.behindTls, path: '/', maxAge: SESSION_TTL_MS / 1000 });
  }

  async function fail(req: FastifyRequest, reply: FastifyReply, err: HttpError): Promise<never> {
    await failureLimit.call(app, req, reply); // throws 429 once over the limit
    throw err;
  }

  const authenticate: preHandlerAsyncHookHandler = async (req, reply) => {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer (\S+)$/i.exec(header);
      const token = m ? await store.useToken(hashSecret(m[1]!), ctx.now()) : undefined;
      if (token === undefined) await fail(req, reply, unauthorized('the bearer token is not valid (revoked, or never issued)'));
      req.principal = { kind: 'token', name: token!.name };
      return;
    }
    const cookie = req.cookies[SESSION_COOKIE];
    if (cookie === undefined) throw unauthorized();
    const session = await store.getSession(hashSecret(cookie), ctx.now());
    const admin = session && (await store.getAdminById(session.adminId));
    if (admin === undefined) await fail(req, reply, unauthorized('the session has ended; log in again'));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const origin = req.headers.origin;
      if (req.headers[CSRF_HEADER] !== CSRF_VALUE || (origin !== undefined && origin !== `${req.protocol}://${req.host}`)) {
        throw new HttpError(403, 'csrf', `a change made with a session cookie needs the header "X-Requested-With: ${CSRF_VALUE}" and this page's origin`);
      }
    }
    req.principal = { kind: 'admin', adminId: admin!.id, username: admin!.username };
  };

  app.get('/api/v1/setup', { schema: { tags: ['session'], summary: 'Whether the first administrator is still to be created' } },
    async () => ({ needed: (await store.adminCount()) === 0 }));

  app.post('/api/v1/setup', {
    config: { rateLimit: LOGIN_LIMIT },
    schema: {
      tags: ['session'], summary: 'Create the first administrator with the one-time setup token that `up --web` printed',
      body: {
        type: 'object', additionalProperties: false, required: ['token', 'username', 'password'],
        properties: { token: { type: 'string', maxLength: 128 }, username: credentialsSchema.properties.username, password: credentialsSchema.properties.password },
      },
    },
  }, async (req, reply) => {
    const { token, username, password } = req.body as { token: string; username: string; password: string };
    const meta = await store.getMeta(SETUP_META);
    const setup = meta === undefined ? undefined : (JSON.parse(meta) as { hash: string; expiresAt: number });
    if (setup === undefined || setup.expiresAt < ctx.now() || setup.hash !== hashSecret(token) || (await store.adminCount()) > 0) {
      throw new HttpError(403, 'setup_closed', 'the setup link is used, expired or wrong: run `wireguard-ts down` and `up --web ...` for a new one while no administrator exists');
    }
    if (password.length < MIN_PASSWORD) throw badInput('password', `password must have at least ${MIN_PASSWORD} characters`);
    const admin = await store.createAdmin(username, await hash(password));
    await store.setMeta(SETUP_META, undefined);
    await startSession(reply, admin.id);
    return reply.code(201).send({ username });
  });

  app.post('/api/v1/session', {
    config: { rateLimit: LOGIN_LIMIT },
    schema: { tags: ['session'], summary: 'Log in (sets the session cookie)', body: credentialsSchema },
  }, async (req, reply) => {
    const { username, password, totp } = req.body as { username: string; password: string; totp?: string };
    const admin = await store.getAdmin(username);
    const ok = await verify(admin?.passwordHash ?? DUMMY_HASH, password);
    if (admin === undefined || !ok) throw unauthorized('wrong user name or password');
    if (admin.totpSecret !== undefined) {
      if (totp === undefined) throw new HttpError(401, 'totp_required', 'enter the 6-digit code of your authenticator app', 'totp');
      if (!codeMatches(admin.username, admin.totpSecret, totp)) throw new HttpError(401, 'unauthorized', 'wrong code', 'totp');
    }
    await startSession(reply, admin.id);
    return { username: admin.username, totp: admin.totpSecret !== undefined };
  });

  app.get('/api/v1/session', { preHandler: authenticate, schema: { tags: ['session'], summary: 'Who is logged in' } }, async (req) => {
    const p = req.principal!;
    if (p.kind === 'token') return { token: p.name };
    const admin = await store.getAdminById(p.adminId);
    return { username: p.username, totp: admin?.totpSecret !== undefined };
  });

  app.delete('/api/v1/session', { preHandler: authenticate, schema: { tags: ['session'], summary: 'Log out (revokes the session)' } }, async (req, reply) => {
    const cookie = req.cookies[SESSION_COOKIE];
    if (cookie !== undefined) await store.deleteSession(hashSecret(cookie));
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.code(204).send();
  });

  const adminOnly = (req: FastifyRequest): { adminId: number; username: string } => {
    if (req.principal?.kind !== 'admin') throw new HttpError(403, 'admin_only', 'two-factor settings belong to a logged-in administrator');
    return req.principal;
  };

  // Codes are guessed here as at login: a stolen session must not try a million of them.
  const totpRoute = (summary: string, body?: Record<string, unknown>) => ({
    preHandler: authenticate, config: { rateLimit: LOGIN_LIMIT }, schema: { tags: ['session'], summary, ...(body !== undefined ? { body } : {}) },
  });
  /** The administrator, refused when two-factor login is not in the state the route needs. */
  async function totpAdmin(req: FastifyRequest, on: boolean): Promise<Admin> {
    const { adminId } = adminOnly(req);
    const admin = await store.getAdminById(adminId);
    if (admin === undefined) throw unauthorized('the session has ended; log in again');
    if ((admin.totpSecret !== undefined) !== on) throw new HttpError(409, on ? 'totp_off' : 'totp_on', on ? 'two-factor login is off' : 'two-factor login is on: turn it off (with a code) before enrolling again');
    return admin;
  }

  // Enrolling while it is on would let a session replace the authenticator without a code.
  app.post('/api/v1/totp', totpRoute('A new TOTP secret to confirm (not active yet), its otpauth URI and that URI as a QR code (SVG)'), async (req, reply) => {
    const { username } = await totpAdmin(req, false);
    const secret = new OTPAuth.Secret({ size: 20 }).base32;
    const uri = totpFor(username, secret).toString();
    return reply.header('cache-control', 'no-store').send({ secret, uri, qr: await qrSvg(uri) });
  });

  app.post('/api/v1/totp/confirm', totpRoute('Turn TOTP on with a code from the new secret', {
    type: 'object', additionalProperties: false, required: ['secret', 'code'], properties: { secret: { type: 'string', pattern: '^[A-Z2-7]{16,64}$' }, code: totpCode },
  }), async (req) => {
    const admin = await totpAdmin(req, false);
    const { secret, code } = req.body as { secret: string; code: string };
    if (!codeMatches(admin.username, secret, code)) throw badInput('code', 'wrong code for this secret');
    await store.setAdminTotp(admin.id, secret);
    return { totp: true };
  });

  app.delete('/api/v1/totp', totpRoute('Turn TOTP off with a current code', { type: 'object', additionalProperties: false, required: ['code'], properties: { code: totpCode } }), async (req) => {
    const admin = await totpAdmin(req, true);
    const { code } = req.body as { code: string };
    if (!codeMatches(admin.username, admin.totpSecret!, code)) throw badInput('code', 'wrong code');
    await store.setAdminTotp(admin.id, undefined);
    return { totp: false };
  });

  return authenticate;
}
