import type { components } from '../src/lib/api/schema';
import { accessible, expect, fixture, screenshot, signIn, test, tokenOf, wg } from './helpers';

type Snapshot = components['schemas']['Snapshot'];

test('a site’s lists and reference scans: create, a stale edit applied again, a profile preview', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg('/sites'));
  await page.getByRole('link', { name: 'North Pit', exact: true }).click();
  await expect(page).toHaveURL(wg(`/sites/${fixture.northSiteId}`));
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('North Pit');

  // The scanner's own reference scan arrived, and its profile previews.
  await expect(page.getByRole('cell', { name: 'T-REF-1', exact: true })).toBeVisible();
  await page.getByRole('button', { name: 'Preview T-REF-1' }).click();
  await expect(page.locator('[data-testid="profile-3d"][data-rendered="true"], [data-testid="heatmap"]').first()).toBeVisible();

  await page.getByRole('button', { name: 'New list' }).click();
  const editor = page.getByRole('form', { name: 'New list' });
  await editor.getByLabel('List name').fill('Destinations');
  await editor.getByRole('button', { name: 'Add item' }).click();
  await editor.getByLabel('Code of item 1').fill('CRUSHER');
  await editor.getByLabel('Label of item 1').fill('Primary crusher');
  await editor.getByRole('button', { name: 'Add item' }).click();
  await editor.getByLabel('Code of item 2').fill('WASTE');
  await editor.getByLabel('Label of item 2').fill('Waste dump');
  await editor.getByRole('button', { name: 'Save list' }).click();
  const card = page.getByRole('region', { name: 'Destinations' });
  await expect(card).toContainText('Primary crusher (CRUSHER) · Waste dump (WASTE)');
  await expect(page.getByRole('row', { name: /Loader bay Load lists On/ })).toBeVisible();
  await screenshot(page, 'site-sync');
  await accessible(page);

  // Someone else changes the list while this person edits it.
  await card.getByRole('button', { name: 'Edit Destinations' }).click();
  const edit = page.getByRole('form', { name: 'Edit Destinations' });
  await edit.getByLabel('Label of item 1').fill('Crusher 1');
  const base = `/api/v1/workgroups/${fixture.workgroupId}/sites/${fixture.northSiteId}/sync/load-lists`;
  const headers = { authorization: `Bearer ${await tokenOf(page)}` };
  const snapshot = (await (await page.request.get(base, { headers })).json()) as Snapshot;
  const id = snapshot.records.find((r) => r.record && 'name' in r.record && r.record.name === 'Destinations')!.id;
  const theirs = { list: { name: 'Destinations', items: [{ code: 'STOCKPILE', label: 'Stockpile A', active: true, order: 0 }] } };
  expect((await page.request.put(`${base}/${id}`, { headers, data: theirs })).status()).toBe(200);

  await edit.getByRole('button', { name: 'Save list' }).click();
  const conflict = edit.getByRole('alert');
  await expect(conflict).toContainText('Someone changed this list');
  await expect(conflict).toContainText('STOCKPILE (Stockpile A)');
  await screenshot(page, 'site-sync-conflict');
  await conflict.getByRole('button', { name: 'Apply my change over it' }).click();
  await expect(card).toContainText('Crusher 1 (CRUSHER) · Waste dump (WASTE)');
});
