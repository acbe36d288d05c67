import { chromium } from '@playwright/test';
import type { components } from '../src/lib/api/schema';
import { accessible, apiGet, expect, fixture, screenshot, signIn, test, wg } from './helpers';

type Page_ = components['schemas']['Page_Measurement'];

/** Distinct colours drawn on a canvas: a blank one has one. */
async function coloursOn(canvas: import('@playwright/test').Locator): Promise<number> {
  return canvas.evaluate((element: HTMLCanvasElement) => {
    const copy = document.createElement('canvas');
    copy.width = element.width;
    copy.height = element.height;
    const context = copy.getContext('2d')!;
    context.drawImage(element, 0, 0);
    const data = context.getImageData(0, 0, copy.width, copy.height).data;
    const seen = new Set<number>();
    for (let i = 0; i < data.length && seen.size < 1000; i += 16) seen.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
    return seen.size;
  });
}

async function someMeasurement(page: import('@playwright/test').Page) {
  const got = await apiGet<Page_>(page, `/api/v1/workgroups/${fixture.workgroupId}/measurements?device_id=${fixture.mpsDeviceId}&limit=1`);
  return got.items[0]!;
}

test('one measurement shows every field and its 3D load profile', async ({ page }) => {
  await signIn(page, fixture.admin);
  const m = await someMeasurement(page);
  await page.goto(wg(`/measurements/${m.device_id}/${m.measurement_id}`));
  await expect(page.getByRole('heading', { level: 1 })).toContainText(`truck ${m.truck.truck_id}`);
  await expect(page.getByText(m.measurement_id)).toBeVisible();
  await expect(page.getByText('Payload')).toBeVisible();
  const canvas = page.getByTestId('profile-3d');
  await expect(canvas).toHaveAttribute('data-rendered', 'true');
  expect(await coloursOn(canvas)).toBeGreaterThan(20);
  // Orbit: a drag changes the picture.
  const before = await canvas.screenshot();
  const box = (await canvas.boundingBox())!;
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 120, box.y + box.height / 2 + 30, { steps: 8 });
  await page.mouse.up();
  expect((await canvas.screenshot()).equals(before)).toBe(false);
  await screenshot(page, 'measurement-3d');
  await accessible(page);

  await page.getByRole('button', { name: 'Heat map' }).click();
  expect(await coloursOn(page.getByTestId('heatmap'))).toBeGreaterThan(20);
  await screenshot(page, 'measurement-heatmap');
});

test('without WebGL the profile is a 2D heat map', async () => {
  const browser = await chromium.launch({
    executablePath: fixture.chromium,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-3d-apis', '--disable-webgl'],
  });
  try {
    const page = await browser.newPage({ baseURL: fixture.baseUrl, viewport: { width: 1366, height: 900 } });
    await signIn(page, fixture.admin);
    const m = await someMeasurement(page);
    await page.goto(wg(`/measurements/${m.device_id}/${m.measurement_id}`));
    await expect(page.getByText('no WebGL')).toBeVisible();
    await expect(page.getByTestId('profile-3d')).toHaveCount(0);
    expect(await coloursOn(page.getByTestId('heatmap'))).toBeGreaterThan(20);
    await screenshot(page, 'measurement-no-webgl');
  } finally {
    await browser.close();
  }
});
