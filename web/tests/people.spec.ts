import { writeFileSync } from 'node:fs';
import { accessible, expect, fixture, screenshot, signIn, test, wg } from './helpers';

test('a viewer sees the data and no admin controls', async ({ page }) => {
  await signIn(page, fixture.viewer);
  const tabs = page.getByRole('navigation', { name: 'Workgroup' });
  await expect(tabs.getByRole('link', { name: 'Measurements' })).toBeVisible();
  await expect(tabs.getByRole('link', { name: 'Members' })).toHaveCount(0);
  await expect(tabs.getByRole('link', { name: 'API tokens' })).toHaveCount(0);
  await expect(tabs.getByRole('link', { name: 'Security Services' })).toHaveCount(0);
  await expect(page.getByRole('link', { name: 'Workgroups' })).toHaveCount(0);

  await page.goto(wg('/sites'));
  await expect(page.getByRole('cell', { name: 'North Pit', exact: true })).toBeVisible();
  await expect(page.getByRole('button', { name: /Edit|Delete/ })).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'New site' })).toHaveCount(0);

  await page.goto(wg('/devices'));
  await expect(page.getByRole('link', { name: 'Loader bay' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Provision a scanner' })).toHaveCount(0);
  await page.getByRole('link', { name: 'Loader bay' }).click();
  await expect(page.getByRole('heading', { name: 'Loader bay' })).toBeVisible();
  await expect(page.getByRole('button', { name: /Rotate|Revoke|Save/ })).toHaveCount(0);
  await screenshot(page, 'device-as-viewer');
});

test('an admin manages members, permissions and API tokens', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg('/members'));
  await expect(page.getByRole('cell', { name: fixture.viewer.email })).toBeVisible();
  await page.getByLabel('E-mail').fill('new.member@example.com');
  await page.getByLabel('Name (for a new account)').fill('New Member');
  await page.getByLabel(/Initial password/).fill('short');
  await page.getByRole('button', { name: 'Add member' }).click();
  // The browser's own check stops a too-short password before it is sent.
  await expect(page.getByRole('cell', { name: 'new.member@example.com' })).toHaveCount(0);
  await page.getByLabel(/Initial password/).fill('a long enough password');
  await page.getByRole('button', { name: 'Add member' }).click();
  await expect(page.getByRole('cell', { name: 'new.member@example.com' })).toBeVisible();
  await screenshot(page, 'members');
  await accessible(page);

  await page.goto(wg('/api-tokens'));
  await page.getByLabel('Name').fill('ERP export');
  await page.getByRole('button', { name: 'Create token' }).click();
  const secret = page.getByTestId('secret');
  await expect(secret).toHaveText(/^myst_/);
  await screenshot(page, 'api-token-created');
  // The token works for the API, read-only.
  const token = (await secret.textContent())!;
  const answer = await page.request.get(`/api/v1/workgroups/${fixture.workgroupId}/measurements?limit=1`, { headers: { authorization: `Bearer ${token}` } });
  expect(answer.status()).toBe(200);
  await page.getByRole('button', { name: 'I have stored it' }).click();
  await expect(page.getByTestId('secret')).toHaveCount(0);
  await page.getByRole('button', { name: 'Revoke ERP export' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await expect(page.getByRole('cell', { name: 'Revoked' })).toBeVisible();
  const refused = await page.request.get(`/api/v1/workgroups/${fixture.workgroupId}/measurements?limit=1`, { headers: { authorization: `Bearer ${token}` } });
  expect(refused.status()).toBe(401);
  await accessible(page);
});

test('field errors show beside their fields', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg('/sites'));
  await page.getByLabel('Name').fill('Nowhere');
  await page.getByRole('combobox', { name: 'Time zone' }).fill('Mars/Olympus_Mons');
  await page.getByRole('button', { name: 'Create site' }).click();
  await expect(page.locator('#zone-error')).toBeVisible();
  await screenshot(page, 'sites-field-error');
  await accessible(page);
});

test('an operator provisions a scanner and sees its credential once', async ({ page }) => {
  await signIn(page, fixture.operator);
  await page.goto('/workgroups');
  await expect(page.getByRole('link', { name: fixture.workgroupName })).toBeVisible();
  await screenshot(page, 'workgroups');
  await accessible(page);
  await page.goto('/ingest-rejections');
  await expect(page.getByRole('heading', { name: 'Rejected messages' })).toBeVisible();
  await screenshot(page, 'ingest-rejections');

  await page.goto(wg('/devices'));
  await page.getByLabel('Site of the new scanner').selectOption({ label: 'South Quarry' });
  await page.getByLabel('Kind').selectOption('lvs');
  await page.getByLabel('Serial number').fill('LVS-2026-0100');
  await page.locator('form.grid-form').getByLabel('Name').fill('Gate scanner');
  await page.getByRole('button', { name: 'Provision' }).click();
  const secret = page.getByTestId('secret');
  await expect(secret).toHaveText(/^mysd_/);
  await expect(page.getByRole('link', { name: 'Gate scanner' })).toBeVisible();
  await screenshot(page, 'device-provisioned');
  // The harness starts an agent with this credential after the browser tests.
  const href = await page.getByRole('link', { name: 'Gate scanner' }).getAttribute('href');
  writeFileSync(`${fixture.outDir}/provisioned.json`, JSON.stringify({ credential: await secret.textContent(), device_id: href!.split('/').pop() }));
  await page.getByRole('button', { name: 'I have stored it' }).click();
  await expect(secret).toHaveCount(0);
});

test('an admin sees sites, devices with their settings, and their account', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg('/sites'));
  await expect(page.getByRole('cell', { name: 'Australia/Perth' })).toBeVisible();
  await screenshot(page, 'sites');
  await page.goto(wg('/devices'));
  await expect(page.getByRole('table')).toContainText('Online');
  await screenshot(page, 'devices');
  await accessible(page);
  await page.getByRole('link', { name: 'Loader bay' }).click();
  await expect(page.getByRole('heading', { name: 'Reported settings' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Rotate credential…' })).toBeVisible();
  await screenshot(page, 'device');
  await accessible(page);
  await page.goto('/account');
  await expect(page.getByRole('heading', { name: 'Change password' })).toBeVisible();
  await screenshot(page, 'account');
  await accessible(page);
});
