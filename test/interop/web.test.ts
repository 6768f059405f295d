// The web admin in a real browser (Debian's chromium driven by playwright-core, never a
// downloaded browser) against a real server: `up --web` in one namespace, a real client tunnel
// (wg-quick with wireguard-go) in another, the page reached over a third link. Setup link,
// login, wrong password refused, add a client and decode its QR code back into the config,
// traffic in the chart matching `wg show transfer`, disable/enable live, expiry, and clients and
// history surviving down/up and kill -9. Without root, over the fake device of the API tests:
// two-factor login enrolled from its QR code, then required, and the config box wrapping its
// long lines. Screenshots go to test-results/ (one is in the README).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hash } from '@node-rs/argon2';
import jsQRModule from 'jsqr';
import * as OTPAuth from 'otpauth';
import { chromium, type Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { startFixture } from '../server-fixture.js';
import { Cleanup, ensureTools, isRoot, sh, tryRun, uniqueName, waitFor } from './harness.js';
import { BIN, createLink, ping } from './topology.js';
import { CHROMIUM, CHROMIUM_FLAGS, noChromium } from '../browser.js';

// jsqr is CommonJS with `exports.default`: Node's ESM import sees the whole exports object.
type Decode = (data: Uint8ClampedArray, width: number, height: number) => { data: string } | null;
const jsQR = ((jsQRModule as unknown as { default?: Decode }).default ?? jsQRModule) as unknown as Decode;
const SHOTS = fileURLToPath(new URL('../../../test-results/', import.meta.url));
const WG_QUICK_ENV = { ...process.env, WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go', WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' };
const skip = !isRoot ? 'needs root for network namespaces and TUN devices' : noChromium;
const PASSWORD = 'correct horse battery';

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Chromium with a throw-away profile, closed by `cleanup`; console errors (CSP violations among them) are collected. */
async function openBrowser(cleanup: Cleanup): Promise<{ page: Page; consoleErrors: string[] }> {
  const profile = mkdtempSync(join(tmpdir(), 'wgts-chromium-'));
  cleanup.add(() => rmSync(profile, { recursive: true, force: true }));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1280, height: 820 }, deviceScaleFactor: 2 });
  cleanup.add(() => browser.close());
  const page = browser.pages()[0] ?? (await browser.newPage());
  const consoleErrors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  return { page, consoleErrors };
}

const cspViolations = (errors: readonly string[]): string[] => errors.filter((e) => /Content Security Policy/.test(e));

/** Fills and sends the login form (the code field only when given: the page shows it when asked). */
async function logIn(page: Page, password: string, code?: string): Promise<void> {
  await page.fill('#login input[name=username]', 'admin');
  await page.fill('#login input[name=password]', password);
  if (code !== undefined) await page.fill('#login input[name=totp]', code);
  await page.click('#login button[type=submit]');
}

/** Decodes the QR code shown in the image `selector` (a screenshot of it, read by jsQR). */
async function readQr(page: Page, selector: string): Promise<string> {
  await page.locator(selector).evaluate((img) => (img as unknown as { decode(): Promise<void> }).decode());
  const png = PNG.sync.read(await page.locator(selector).screenshot());
  const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  assert.ok(code, 'a QR code is readable on the page');
  return code.data;
}

test('web admin in chromium: setup, login, add client + QR, traffic chart = wg show, disable/enable, expiry, restart', { skip, timeout: 300_000 }, async () => {
  const cleanup = new Cleanup();
  try {
    ensureTools();
    const { nsA, nsB, outerA } = createLink(cleanup);
    // A link from this namespace (the browser's) to the server's.
    const vw = uniqueName('vw');
    const vwa = uniqueName('vwa');
    sh('ip', ['link', 'add', vw, 'type', 'veth', 'peer', 'name', vwa, 'netns', nsA]);
    cleanup.add(() => void tryRun('ip', ['link', 'del', vw]));
    sh('ip', ['addr', 'add', '10.98.7.1/30', 'dev', vw]);
    sh('ip', ['link', 'set', vw, 'up']);
    sh('ip', ['-n', nsA, 'addr', 'add', '10.98.7.2/30', 'dev', vwa]);
    sh('ip', ['-n', nsA, 'link', 'set', vwa, 'up']);
    const state = mkdtempSync(join(tmpdir(), 'wgts-web-'));
    cleanup.add(() => rmSync(state, { recursive: true, force: true }));
    const ifname = uniqueName('wgweb');
    const common = ['--interface', ifname, '--state-dir', state];
    const env = { ...process.env, WG_TS_TRAFFIC_INTERVAL: '1' };
    const cli = (...args: string[]): { out: string; err: string; status: number | null } => {
      const r = spawnSync('ip', ['netns', 'exec', nsA, process.execPath, BIN, ...args, ...common], { encoding: 'utf8', env });
      return { out: r.stdout, err: r.stderr, status: r.status };
    };
    cleanup.add(() => void cli('down'));
    const web = '10.98.7.2:8089';
    const up = cli('up', '--endpoint', outerA, '--port', '41821', '--web', web);
    assert.equal(up.status, 0, up.out + up.err);
    assert.match(up.err, /warning: the web admin listens on 10\.98\.7\.2 over plain HTTP/);
    const link = /one-time setup link .*: (http:\/\/\S+#setup=[\w-]+)/.exec(up.err)?.[1];
    assert.ok(link, up.err);
    const wgShow = (field: string): string => sh('ip', ['netns', 'exec', nsA, 'wg', 'show', ifname, field]);

    const { page, consoleErrors } = await openBrowser(cleanup);

    // Setup link -> administrator -> clients table.
    await page.goto(link);
    await page.fill('#setup input[name=username]', 'admin');
    await page.fill('#setup input[name=password]', PASSWORD);
    await page.click('#setup button[type=submit]');
    await page.locator('#clients').waitFor();
    await page.locator('#rows tr').first().waitFor();
    assert.match(await page.locator('#rows').innerText(), /client1\s+10\.8\.0\.2\s+active/);

    // Log out; a wrong password is refused; the right one enters.
    await page.click('#logout');
    await page.locator('#login').waitFor();
    await logIn(page, 'wrong password!');
    await waitFor('refusal shown', async () => /wrong user name or password/.test(await page.locator('#login .error').innerText()));
    await shot(page, 'login-refused');
    await logIn(page, PASSWORD);
    await page.locator('#clients').waitFor();

    // Add a client: its config and QR code; the QR decodes to the config text.
    await page.click('#add');
    await page.fill('#add-form input[name=name]', 'laptop');
    await page.click('#add-submit');
    await page.locator('#client-dialog[open]').waitFor();
    await waitFor('config shown', async () => (await page.locator('#c-config').innerText()).startsWith('[Interface]'));
    const config = await page.locator('#c-config').innerText();
    assert.equal(await readQr(page, '#c-qr'), config.replace(/\n$/, '') + '\n', 'the QR code holds the configuration');
    assert.match(config, /Address = 10\.8\.0\.3\/32/);
    await shot(page, 'client-added');
    const publicKey = sh('wg', ['pubkey'], { input: /PrivateKey = (\S+)/.exec(config)![1] + '\n' }).trim();
    assert.ok(wgShow('peers').includes(publicKey), 'the new client is on the device');

    // Traffic through a real tunnel: wg-quick (wireguard-go) in the other namespace.
    const clientFile = join(state, `${uniqueName('wgcl')}.conf`);
    writeFileSync(clientFile, config, { mode: 0o600 });
    const wgQuick = (verb: 'up' | 'down'): string => sh('ip', ['netns', 'exec', nsB, 'wg-quick', verb, clientFile], { env: WG_QUICK_ENV });
    wgQuick('up');
    cleanup.add(() => void wgQuick('down'));
    assert.ok(ping({ ns: nsB }, '10.8.0.1', ['-c', '20', '-s', '1200']), 'the client reaches the server');
    const transfer = (): [number, number] => {
      const line = wgShow('transfer').split('\n').find((l) => l.startsWith(publicKey))!;
      const [, rx, tx] = line.split('\t');
      return [Number(rx), Number(tx)];
    };
    const month = async (): Promise<[number, number]> => {
      const t = (await page.evaluate(async (id) => (await fetch(`/api/v1/clients/${id}/traffic?range=hour`)).json(), await page.locator('#rows tr', { hasText: 'laptop' }).getAttribute('data-id'))) as { month: { rx: number; tx: number } };
      return [t.month.rx, t.month.tx];
    };
    await waitFor('stored totals equal wg show transfer', async () => {
      const before = transfer();
      await new Promise((r) => setTimeout(r, 2500));
      const stored = await month();
      return before[0] > 0 && JSON.stringify(stored) === JSON.stringify(before) && JSON.stringify(transfer()) === JSON.stringify(before);
    }, 60_000);
    await page.click('.ranges button[data-range=hour]');
    await waitFor('chart has points', async () => Number(await page.locator('#c-chart').getAttribute('data-points')) > 0);
    await page.waitForTimeout(300);
    await shot(page, 'traffic-chart');

    // Disable: the peer leaves the device; enable: it returns.
    await page.click('#c-toggle');
    await waitFor('disabled shown', async () => /Disabled/.test(await page.locator('#c-state').innerText()));
    assert.ok(!wgShow('peers').includes(publicKey), 'disabled: not in wg show');
    await page.click('#c-toggle');
    await waitFor('enabled shown', async () => /Active/.test(await page.locator('#c-state').innerText()));
    assert.ok(wgShow('peers').includes(publicKey), 'enabled: back in wg show');

    // Expiry in the past: shown expired, absent from the device.
    await page.fill('#c-expires', '2020-01-01T00:00');
    await page.click('#c-expires-save');
    await waitFor('expired shown', async () => /Expired/.test(await page.locator('#c-state').innerText()));
    assert.ok(!wgShow('peers').includes(publicKey), 'expired: not in wg show');
    await page.click('#c-close');
    await waitFor('table says expired', async () => /laptop\s+10\.8\.0\.3\s+expired/.test(await page.locator('#rows').innerText()));
    await shot(page, 'clients');
    const kept = await month();

    // Restart: down/up, then kill -9 of the daemon and up: clients and history survive.
    const down = cli('down');
    assert.equal(down.status, 0, down.err);
    const up2 = cli('up', '--web', web);
    assert.equal(up2.status, 0, up2.err);
    const pid = sh('pgrep', ['-f', '--', `--server ${state} `]).trim().split('\n')[0]!;
    process.kill(Number(pid), 'SIGKILL');
    await waitFor('daemon gone', () => tryRun('ip', ['-n', nsA, 'link', 'show', ifname]).status !== 0, 10_000);
    const again = cli('up', '--web', web);
    assert.equal(again.status, 0, again.err);
    await page.goto(`http://${web}/`);
    await waitFor('page ready', async () => (await page.locator('#login').isVisible()) || (await page.locator('#clients').isVisible()), 10_000);
    if (await page.locator('#login').isVisible()) await logIn(page, PASSWORD);
    await waitFor('clients after restart', async () => /laptop\s+10\.8\.0\.3\s+expired/.test(await page.locator('#rows').innerText()));
    assert.deepEqual(await month(), kept, 'traffic history survives down/up and kill -9');
    assert.deepEqual(cspViolations(consoleErrors), [], 'no CSP violation');
  } finally {
    await cleanup.run();
  }
});

/** A 6-digit code that `otp` does not accept now (the server allows one period either side). */
function wrongCode(otp: OTPAuth.TOTP): string {
  const valid = new Set([-1, 0, 1].map((d) => otp.generate({ timestamp: Date.now() + d * otp.period * 1000 })));
  return ['000000', '111111', '222222', '333333'].find((c) => !valid.has(c))!;
}

test('web admin in chromium: two-factor login enrolled from its QR code, then required to log in and to turn it off; the config box wraps', { skip: noChromium, timeout: 120_000 }, async () => {
  const cleanup = new Cleanup();
  try {
    const f = await startFixture({ clients: 2 });
    cleanup.add(() => f.close());
    await f.store.createAdmin('admin', await hash(PASSWORD));
    const { page, consoleErrors } = await openBrowser(cleanup);
    const error = (dialog: string) => page.locator(`${dialog} .error`).innerText();
    await page.goto(f.base);
    await logIn(page, PASSWORD);
    await page.locator('#clients').waitFor();

    // Enroll: the QR code holds the otpauth URI of the secret shown; a wrong code is refused.
    await page.click('#totp-open');
    await waitFor('two-factor off', async () => /^Off/.test(await page.locator('#totp-status').innerText()));
    await page.click('#totp-start');
    await page.locator('#totp-enroll').waitFor();
    const otp = OTPAuth.URI.parse(await readQr(page, '#totp-qr'));
    assert.ok(otp instanceof OTPAuth.TOTP, 'the QR code is a TOTP URI');
    assert.equal(otp.secret.base32, await page.locator('#totp-secret').innerText(), 'the QR code holds the secret shown');
    assert.equal(otp.label, 'admin');
    await shot(page, 'totp-enroll');
    /** `button` of the dialog with a wrong code (refused, two-factor stays `on`), then with the right one (it turns). */
    const wrongThenRight = async (button: string, on: boolean): Promise<void> => {
      await page.fill('#totp-code', wrongCode(otp));
      await page.click(button);
      await waitFor('wrong code refused', async () => /wrong code/.test(await error('#totp-dialog')));
      assert.equal((await f.store.getAdmin('admin'))!.totpSecret !== undefined, on, 'a wrong code changes nothing');
      await page.fill('#totp-code', otp.generate());
      await page.click(button);
      await waitFor(`two-factor ${on ? 'off' : 'on'}`, async () => (on ? /^Off/ : /^On/).test(await page.locator('#totp-status').innerText()));
      await page.click('#totp-close');
    };
    await wrongThenRight('#totp-confirm', false);

    // Log out: the password alone and a wrong code are refused, the right code enters.
    await page.click('#logout');
    await page.locator('#login').waitFor();
    await logIn(page, PASSWORD);
    await waitFor('code asked for', async () => /6-digit code/.test(await error('#login')));
    assert.ok(await page.locator('#totp-field').isVisible());
    await logIn(page, PASSWORD, wrongCode(otp));
    await waitFor('wrong code refused', async () => /wrong code/.test(await error('#login')));
    assert.ok(!(await page.locator('#clients').isVisible()), 'still logged out');
    await logIn(page, PASSWORD, otp.generate());
    await page.locator('#clients').waitFor();

    // The config box: its long key lines wrap instead of running out of the box.
    await page.locator('#rows tr').first().click();
    await waitFor('config shown', async () => (await page.locator('#c-config').innerText()).startsWith('[Interface]'));
    assert.ok(await page.locator('#c-config').evaluate((el) => el.scrollWidth <= el.clientWidth), 'no line of the config runs past its box');
    await shot(page, 'client-config');
    await page.click('#c-close');

    // Turning it off takes a right code too; then the password alone enters again.
    await page.click('#totp-open');
    await waitFor('two-factor on', async () => /^On/.test(await page.locator('#totp-status').innerText()));
    await wrongThenRight('#totp-disable', true);
    await page.click('#logout');
    await logIn(page, PASSWORD);
    await page.locator('#clients').waitFor();
    assert.deepEqual(cspViolations(consoleErrors), [], 'no CSP violation');
  } finally {
    await cleanup.run();
  }
});
