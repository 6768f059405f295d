// A peer under load answers our handshake response with a cookie reply (issue 12, item 8): the
// daemon must take the cookie, so that its response to the peer's next initiation carries a
// valid mac2 and the peer, still under load, accepts it and completes the handshake it started.
// The peer is a bare UDP socket in this process (bare-peer.ts) that plays the loaded side.
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Cleanup, ensureTools, isRoot, waitFor } from './harness.js';
import { BarePeer, startBareDaemon } from './bare-peer.js';
import { COOKIE_REPLY_LEN, MSG_RESPONSE, RESP_LEN, RESP_MAC2, RESP_RECEIVER, RESP_SENDER, readU32 } from '../../src/handshake/messages.js';

const skip = isRoot ? false : 'needs root for network namespaces';

describe('cookie replies to our handshake responses', { skip }, () => {
  before(() => ensureTools());

  test('a peer under load completes a handshake it started with us', { timeout: 30_000 }, async () => {
    const cleanup = new Cleanup();
    try {
      const d = await startBareDaemon(cleanup, '10.211.0.1/24', ['--workers', '1']);
      const P = new BarePeer(d.publicKey, cleanup);
      await P.bind();
      d.wg('set', d.ifname, 'peer', P.publicKeyB64, 'allowed-ips', '10.211.0.2/32', 'endpoint', P.endpoint);
      // The source the peer binds its cookie to: the daemon's address and port as it sees them.
      const source = new Uint8Array(18);
      source.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
      source[16] = d.port >> 8;
      source[17] = d.port & 0xff;

      // 1. Our initiation; the daemon's response has no mac2 (it holds no cookie from us).
      const first = await P.sendInitiation(d.port);
      const resp1 = await P.take(MSG_RESPONSE, 3000, (m) => readU32(m, RESP_RECEIVER) === first.index);
      assert.ok(P.checker.checkMac1(resp1, RESP_LEN));
      assert.ok(resp1.subarray(RESP_MAC2, RESP_LEN).every((b) => b === 0), 'no mac2 before any cookie');
      assert.equal(P.checker.checkMac2(resp1, RESP_LEN, source, performance.now()), false);
      // 2. Under load, we refuse it and answer with a cookie reply to its sender index.
      const reply = new Uint8Array(COOKIE_REPLY_LEN);
      P.checker.createReply(reply, resp1, RESP_LEN, readU32(resp1, RESP_SENDER), source, performance.now());
      await P.send(reply, d.port);
      // 3. Our next initiation (past the flood limit of 20 a second); its response must carry mac2.
      await new Promise((r) => setTimeout(r, 100));
      const second = await P.sendInitiation(d.port);
      const resp2 = await P.take(MSG_RESPONSE, 3000, (m) => readU32(m, RESP_RECEIVER) === second.index);
      assert.ok(P.checker.checkMac2(resp2, RESP_LEN, source, performance.now()), 'the response carries a mac2 made with our cookie');
      P.finish(second.hs, second.index, resp2);
      await P.send(P.seal(new Uint8Array(0)), d.port);
      await waitFor('the daemon to record the handshake', () => {
        const line = d.wg('show', d.ifname, 'latest-handshakes').trim();
        return Number(line.split('\t')[1] ?? 0) > 0;
      }, 3000);
      assert.equal(d.exited(), false);
    } finally {
      await cleanup.run();
    }
  });
});
