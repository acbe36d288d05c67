import { createServer } from 'node:net';
import { accessible, expect, fixture, screenshot, signIn, test, wg } from './helpers';

test('Security Services: enable on a selection, run now, and read the open ports', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.getByRole('navigation', { name: 'Workgroup' }).getByRole('link', { name: 'Security Services' }).click();
  await expect(page).toHaveURL(wg('/security'));
  const external = page.getByRole('switch', { name: /external scan of Loader bay/ });
  await expect(external).not.toBeChecked();
  await expect(page.getByRole('button', { name: 'Run the external scan of Loader bay now' })).toHaveCount(0);
  await screenshot(page, 'security');
  await accessible(page);

  await page.getByRole('checkbox', { name: 'Select Loader bay' }).check();
  await page.getByLabel('Scans', { exact: true }).selectOption('external');
  await page.getByRole('button', { name: 'Enable', exact: true }).click();
  await expect(external).toBeChecked();

  await page.getByRole('button', { name: 'Run the external scan of Loader bay now' }).click();
  const ports = page.getByRole('button', { name: `${fixture.openPorts.length} open ports on Loader bay` });
  await expect(ports).toBeVisible({ timeout: 60_000 });
  await expect(page.getByRole('button', { name: 'Run the external scan of Loader bay now' })).toBeVisible();
  await screenshot(page, 'security-scanned');

  await ports.click();
  const dialog = page.getByRole('dialog');
  await expect(dialog.getByRole('heading')).toContainText('Open ports · Loader bay');
  for (const port of fixture.openPorts) await expect(dialog.getByRole('cell', { name: String(port), exact: true })).toBeVisible();
  await expect(dialog.locator('tbody tr')).toHaveCount(fixture.openPorts.length);
  await screenshot(page, 'security-ports');
  await accessible(page);
  await dialog.getByRole('button', { name: 'Close' }).click();
});

test('a scan waiting for its scanner shows "Scan scheduled" with its place, and no play button', async ({ page }) => {
  // Spare scanner never connects: its internal scan waits in the queue for it.
  await signIn(page, fixture.admin);
  await page.goto(wg('/security'));
  await page.getByRole('switch', { name: /internal scan of Spare scanner/ }).check();
  await page.getByRole('button', { name: 'Run the internal scan of Spare scanner now' }).click();
  const row = page.getByRole('row', { name: /Spare scanner/ });
  await expect(row.getByText(/Scan scheduled · #\d+ in queue/)).toBeVisible();
  await expect(page.getByRole('button', { name: 'Run the internal scan of Spare scanner now' })).toHaveCount(0);
  await expect(page.getByRole('checkbox', { name: 'Pause refreshing' })).toBeVisible();
  await screenshot(page, 'security-scheduled');
  // Switched off again: the waiting scan is withdrawn.
  await page.getByRole('switch', { name: /internal scan of Spare scanner/ }).uncheck();
  await expect(row.getByText(/Scan scheduled/)).toHaveCount(0);
});

test('a member without Control Devices has no Security Services', async ({ page }) => {
  await signIn(page, fixture.viewer);
  await expect(page.getByRole('navigation', { name: 'Workgroup' }).getByRole('link', { name: 'Security Services' })).toHaveCount(0);
  await page.goto(wg('/security'));
  await expect(page.getByRole('alert')).toContainText('Not allowed');
});

test('what changed since the previous scan: a port that closed, in the tab and the history', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg('/security'));
  const run = page.getByRole('button', { name: 'Run the external scan of Haul road now' });
  await page.getByRole('switch', { name: /external scan of Haul road/ }).check();

  // First scan with one more port answering, then again after it closed.
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((done) => server.listen(fixture.scannedClosedPort, '127.0.0.1', done));
  await run.click();
  const all = fixture.openPorts.length + 1;
  await expect(page.getByRole('button', { name: `${all} open ports on Haul road` })).toBeVisible({ timeout: 60_000 });
  await new Promise((done) => server.close(done));
  await page.getByRole('button', { name: 'Run the external scan of Haul road now' }).click();
  await expect(page.getByRole('button', { name: `${all - 1} open ports on Haul road` })).toBeVisible({ timeout: 60_000 });
  const row = page.getByRole('row', { name: /Haul road/ });
  await expect(row.getByText('1 gone since the last scan')).toHaveAttribute('title', `gone ports ${fixture.scannedClosedPort}`);
  await screenshot(page, 'security-changes');

  const history = page.getByRole('form', { name: 'Search the scan history' });
  await history.getByLabel('Device').selectOption({ label: 'Haul road' });
  await history.getByLabel('Port').fill(String(fixture.scannedClosedPort));
  await history.getByRole('button', { name: 'Search' }).click();
  // Only the first scan found that port open.
  const found = page.locator('table.history tbody tr');
  await expect(found).toHaveCount(1);
  await expect(found).toContainText(`${all} ports`);
  await history.getByLabel('Port').fill('');
  await history.getByRole('button', { name: 'Search' }).click();
  await expect(found).toHaveCount(2);
  await expect(found.first()).toContainText(`gone ports ${fixture.scannedClosedPort}`);
  await screenshot(page, 'security-history');
  await accessible(page);
});
