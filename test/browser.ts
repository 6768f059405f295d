// The browser the web tests drive: Debian's chromium through playwright-core, never a
// downloaded browser, headless and quiet (no sync, updates or background requests).
import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** A skip reason for node:test when the browser is missing, else false. */
export const noChromium: string | false = existsSync(CHROMIUM) ? false : `needs ${CHROMIUM} (scripts/test.sh installs it)`;
