// A client configuration as a QR code in the terminal, for the WireGuard mobile apps' "scan
// from QR code". The matrix comes from the encoder vendored in qrcode-terminal (Kazuhiko Arase's,
// byte mode, versions 1-40); its own printer is not used: it draws two columns per module (a
// 120-column code for a config) or, in its small mode, relies on the terminal's colours being
// light on dark. This one draws two module rows per character with explicit colours, as
// `qrencode -t ansiutf8` does, so a config fits in ~70 columns and scans on any theme.
import { createRequire } from 'node:module';

interface Encoder {
  addData(data: string): void;
  make(): void;
  getModuleCount(): number;
  isDark(row: number, col: number): boolean;
}
const require = createRequire(import.meta.url);
const QRCode = require('qrcode-terminal/vendor/QRCode/index.js') as new (version: number, level: number) => Encoder;
/** Error correction L (7%), what `qrencode` uses: the smallest code, and a screen is not dirty. */
const LEVEL_L = 1;
/** The light margin the QR specification asks for, in modules. */
export const QUIET_ZONE = 4;

/** The code's modules, true for dark, without the quiet zone. */
export function qrMatrix(text: string): boolean[][] {
  const qr = new QRCode(-1, LEVEL_L);
  // The encoder writes one byte per UTF-16 unit: hand it UTF-8 bytes as latin1 characters.
  qr.addData(Buffer.from(text, 'utf8').toString('latin1'));
  qr.make();
  const n = qr.getModuleCount();
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => qr.isDark(r, c)));
}

// Light modules are drawn in the foreground colour (white) on a black background.
const COLOURS = '\x1b[40;37m';
const RESET = '\x1b[0m';
const BOTH = '\u2588';
const TOP = '\u2580';
const BOTTOM = '\u2584';

/** The code as terminal lines, quiet zone included, ending with a newline. */
export function renderQr(text: string): string {
  const m = qrMatrix(text);
  const size = m.length + 2 * QUIET_ZONE;
  const light = (r: number, c: number): boolean => !(m[r - QUIET_ZONE]?.[c - QUIET_ZONE] ?? false);
  const lines: string[] = [];
  for (let r = 0; r < size; r += 2) {
    let line = '';
    for (let c = 0; c < size; c++) {
      const top = light(r, c);
      // Past the last row (odd size) is outside the code: light, a sliver more margin.
      const bottom = r + 1 >= size || light(r + 1, c);
      line += top ? (bottom ? BOTH : TOP) : bottom ? BOTTOM : ' ';
    }
    lines.push(COLOURS + line + RESET);
  }
  return lines.join('\n') + '\n';
}
