// The browser half of `bench.sh web` (tests/src/bin/bench/web.rs sets up the service and
// data and passes the fixture's path). Prints each figure next to its baseline.
import { chromium } from '@playwright/test';
import { readFileSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const f = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;
const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const gz = (file) => gzipSync(readFileSync(`${f.dist}/${file}`), { level: 9 }).length;

// What the first page loads: index.html's scripts, preloads and stylesheets.
const html = readFileSync(`${f.dist}/index.html`, 'utf8');
const first = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
const lazy = readdirSync(`${f.dist}/assets`).map((a) => `assets/${a}`).filter((a) => !first.includes(a));
const firstJs = first.filter((a) => a.endsWith('.js')).reduce((n, a) => n + gz(a), 0);
const firstCss = first.filter((a) => a.endsWith('.css')).reduce((n, a) => n + gz(a), 0);
console.log(`  first page (gzip): JavaScript ${kb(firstJs)} + CSS ${kb(firstCss)} = ${kb(firstJs + firstCss)} (target ≤ 150 KB)`);
for (const a of lazy.filter((a) => a.endsWith('.js'))) console.log(`    loaded when needed: ${a} ${kb(gz(a))}`);

const login = await fetch(`${f.baseUrl}/api/v1/auth/login`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ email: f.email, password: f.password }),
}).then((r) => r.json());
const session = JSON.stringify({ token: login.access_token, expiresAt: Date.now() + login.expires_in * 1000 });

const browser = await chromium.launch({
  executablePath: f.chromium,
  args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
});
const context = await browser.newContext({ baseURL: f.baseUrl, viewport: { width: 1366, height: 900 } });
await context.addInitScript((s) => sessionStorage.setItem('myscanner.session', s), session);
const page = await context.newPage();

// Navigation start → 50 rows in the table, and the API call's own duration, same loads.
const table = [];
const call = [];
for (let i = 0; i < f.loads + 2; i++) {
  await page.goto(`/w/${f.workgroupId}/measurements`, { waitUntil: 'commit' });
  await page.locator('table.measurements tbody tr').nth(49).waitFor();
  const [rendered, api] = await page.evaluate(() => [
    performance.now(),
    performance.getEntriesByType('resource').find((e) => e.name.includes('/measurements?'))?.duration ?? NaN,
  ]);
  if (i >= 2) {
    table.push(rendered);
    call.push(api);
  }
}
console.log(`  measurements table rendered: p50 ${p50(table).toFixed(1)} ms from navigation; its API call p50 ${p50(call).toFixed(1)} ms (${(p50(table) / p50(call)).toFixed(1)}×)`);

// The 3D viewer: time to the first picture, then orbiting (each drag step redraws).
async function viewer(which) {
  const m = f[which];
  const start = Date.now();
  await page.goto(`/w/${f.workgroupId}/measurements/${m.device}/${m.measurement}`);
  const canvas = page.getByTestId('profile-3d');
  await canvas.and(page.locator('[data-rendered="true"]')).waitFor({ timeout: 120_000 });
  const shown = Date.now() - start;
  const box = await canvas.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  const steps = 30;
  const orbit = Date.now();
  for (let i = 1; i <= steps; i++) {
    await page.mouse.move(box.x + box.width / 2 + i * 6, box.y + box.height / 2 + i);
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => done())));
  }
  await page.mouse.up();
  const cells = await page.getByText(/cells of/).textContent();
  return { shown, frame: (Date.now() - orbit) / steps, cells };
}
const small = await viewer('small');
const large = await viewer('large');
console.log(`  3D profile ${large.cells}: shown in ${large.shown} ms, orbit ${large.frame.toFixed(1)} ms a frame (${(1000 / large.frame).toFixed(0)} fps)`);
console.log(`    baseline ${small.cells}: shown in ${small.shown} ms, orbit ${small.frame.toFixed(1)} ms a frame (${(1000 / small.frame).toFixed(0)} fps)`);
console.log('    (software WebGL: SwiftShader on the CPU; a GPU draws far faster)');
await browser.close();
