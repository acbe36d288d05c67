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
  await page.getByRole('button', { name: 'Enable external' }).click();
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
