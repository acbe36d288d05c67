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
