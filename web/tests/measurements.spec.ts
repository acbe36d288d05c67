import { readFileSync } from 'node:fs';
import type { components } from '../src/lib/api/schema';
import { accessible, apiGet, expect, fixture, screenshot, signIn, test, wg } from './helpers';

type Page_ = components['schemas']['Page_Measurement'];

test.beforeEach(async ({ page }) => signIn(page, fixture.admin));

test('measurements from the running scanner appear, newest first', async ({ page }) => {
  await page.goto(wg('/measurements'));
  const rows = page.locator('table.measurements tbody tr');
  await expect(rows).toHaveCount(50);
  const api = await apiGet<Page_>(page, `/api/v1/workgroups/${fixture.workgroupId}/measurements?limit=50`);
  // The table shows what the API answered (the scanner may have added one since: compare
  // the rows the table holds with a page fetched as it loaded, by measurement link).
  const first = await rows.first().getByRole('link').getAttribute('href');
  const newest = api.items[0]!;
  await screenshot(page, 'measurements');
  await accessible(page);

  // The scanner keeps uploading: a newer measurement than the newest shown arrives.
  await expect(async () => {
    const later = await apiGet<Page_>(page, `/api/v1/workgroups/${fixture.workgroupId}/measurements?limit=1`);
    expect(Date.parse(later.items[0]!.scanned_at)).toBeGreaterThan(Date.parse(newest.scanned_at));
  }).toPass({ timeout: 30_000 });
  await page.reload();
  await expect(rows.first().getByRole('link')).not.toHaveAttribute('href', first!);
});

test('filters and pages agree with the API, and live in the URL', async ({ page }) => {
  const query = `device_id=${fixture.mpsDeviceId}&to=${encodeURIComponent(fixture.backlogBefore)}`;
  await page.goto(`${wg('/measurements')}?${query}&order=asc`);
  const rows = page.locator('table.measurements tbody tr');
  await expect(rows).toHaveCount(50);
  await expect(page.getByLabel('Scanner')).toHaveValue(fixture.mpsDeviceId);
  await expect(page.getByRole('columnheader', { name: 'Payload' })).toBeVisible();

  const all: Page_['items'] = [];
  let cursor: string | undefined;
  do {
    const got = await apiGet<Page_>(page, `/api/v1/workgroups/${fixture.workgroupId}/measurements?${query}&order=asc&limit=50${cursor ? `&cursor=${cursor}` : ''}`);
    all.push(...got.items);
    cursor = got.next_cursor ?? undefined;
  } while (cursor);
  expect(all.length).toBe(fixture.backlogPerDevice);

  for (let shown = 50; shown < all.length; shown += 50) {
    await page.getByRole('button', { name: 'Load more' }).click();
    await expect(rows).toHaveCount(Math.min(shown + 50, all.length));
  }
  await expect(page.getByRole('button', { name: 'Load more' })).toHaveCount(0);
  const hrefs = await rows.locator('td:first-child a').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
  expect(hrefs).toEqual(all.map((m) => wg(`/measurements/${m.device_id}/${m.measurement_id}`)));
  await expect(page.getByText('all there are')).toBeVisible();

  // A filter typed into the form lands in the URL, and the table follows it.
  const truck = all[0]!.truck.truck_id;
  await page.getByLabel('Truck').fill(truck);
  await page.getByRole('button', { name: 'Apply filters' }).click();
  await expect(page).toHaveURL(new RegExp(`truck_id=${truck}`));
  const expected = all.filter((m) => m.truck.truck_id === truck).length;
  await expect(rows).toHaveCount(Math.min(expected, 50));
  for (const text of await rows.locator('td:nth-child(3)').allInnerTexts()) expect(text).toContain(truck);
  await screenshot(page, 'measurements-filtered');
});

test('a CSV export downloads every row of the filter', async ({ page }) => {
  const query = `device_id=${fixture.liveDeviceId}&to=${encodeURIComponent(fixture.backlogBefore)}`;
  await page.goto(`${wg('/measurements')}?${query}`);
  await expect(page.locator('table.measurements tbody tr')).toHaveCount(50);
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Export' }).click();
  const file = await (await download).path();
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  expect(lines[0]).toContain('measurement_id');
  expect(lines.length - 1).toBe(fixture.backlogPerDevice);
  await expect(page.getByRole('status').filter({ hasText: `Exported ${fixture.backlogPerDevice} measurements` })).toBeVisible();
});

test('summaries by day and by scanner, as charts and as tables', async ({ page }) => {
  await page.goto(`${wg('/summaries')}?group_by=device&view=table`);
  const table = page.getByRole('table');
  await expect(table.locator('tbody tr')).toHaveCount(2);
  await expect(table).toContainText('Loader bay');
  await expect(table).toContainText('Haul road');
  await screenshot(page, 'summaries-table');
  await accessible(page);
  await page.getByRole('button', { name: 'Chart' }).click();
  await expect(page.locator('.chart canvas').first()).toBeVisible();
  await page.getByLabel('Group by').selectOption('day');
  await expect(page).toHaveURL(/group_by=day/);
  await expect(page.locator('.chart canvas')).toHaveCount(2);
  await screenshot(page, 'summaries-chart');
});
