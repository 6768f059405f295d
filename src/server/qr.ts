// A client configuration as a QR code, for the WireGuard mobile apps' "scan from QR code": on
// the terminal (add-client, up) and as SVG (the HTTP API and the web page), both from the
// `qrcode` encoder (byte mode, versions 1-40). Its own terminal printer is not used: this one
// draws two module rows per character with explicit colours, as `qrencode -t ansiutf8` does,
// so a config fits in ~70 columns and scans on any terminal theme.
import QRCode from 'qrcode';

/** Error correction L (7%), what `qrencode` uses: the smallest code, and a screen is not dirty. */
const LEVEL = 'L';
/** The light margin the QR specification asks for, in modules. */
export const QUIET_ZONE = 4;

/** The code's modules, true for dark, without the quiet zone. */
export function qrMatrix(text: string): boolean[][] {
  const { modules } = QRCode.create(text, { errorCorrectionLevel: LEVEL });
  const n = modules.size;
  return Array.from({ length: n }, (_, r) => Array.from({ length: n }, (_, c) => modules.get(r, c) === 1));
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

/** The code as an SVG document (dark on white, quiet zone included). */
export function qrSvg(text: string): Promise<string> {
  return QRCode.toString(text, { type: 'svg', errorCorrectionLevel: LEVEL, margin: QUIET_ZONE });
}
