import { accessible, expect, fixture, screenshot, signIn, test, wg } from './helpers';

test('remote control: the scanner’s screen in the browser, ended by an admin with its message', async ({ page, context }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg(`/devices/${fixture.mpsDeviceId}`));
  await expect(page.getByText('Available')).toBeVisible();
  await page.getByText('Use a VNC client').click();
  await expect(page.locator('pre.command')).toContainText(`--device ${fixture.mpsDeviceId}`);
  await page.getByRole('button', { name: 'Connect' }).click();
  const remote = page.getByRole('region', { name: 'Remote control' });
  await expect(remote.getByRole('status')).toHaveText('Connected');
  // noVNC draws the server's framebuffer: a canvas of the VNC server's own size.
  const canvas = page.getByTestId('remote-screen').locator('canvas');
  const [width, height] = fixture.vncGeometry;
  await expect.poll(() => canvas.evaluate((c: HTMLCanvasElement) => [c.width, c.height])).toEqual([width, height]);
  // ...showing the server's picture: its root window is white (Xvnc -wr).
  await expect
    .poll(() =>
      canvas.evaluate((c: HTMLCanvasElement) => Array.from(c.getContext('2d')!.getImageData(c.width / 2, c.height / 2, 1, 1).data.slice(0, 3))),
    )
    .toEqual([255, 255, 255]);
  await screenshot(page, 'remote-connected');
  await accessible(page);

  // An admin ends the session from the audit; the viewer says so.
  // (A tab of its own: a session lives in one tab, so this one signs in too.)
  const audit = await context.newPage();
  await signIn(audit, fixture.admin, wg('/remote-sessions'));
  await audit.getByRole('checkbox', { name: 'Active sessions only' }).check();
  await audit.getByRole('button', { name: `End session of ${fixture.admin.email}` }).click();
  await audit.getByRole('dialog').getByRole('button', { name: 'End session' }).click();
  await expect(page.getByTestId('remote-ended')).toHaveText('An administrator ended this session.');
  await screenshot(page, 'remote-ended');
  await audit.getByRole('checkbox', { name: 'Active sessions only' }).uncheck();
  await expect(audit.getByRole('cell', { name: 'ended by admin' })).toBeVisible();
  await screenshot(audit, 'remote-sessions');
  await accessible(audit);
});

test('a scanner with remote control switched off says so', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg(`/devices/${fixture.liveDeviceId}`));
  await expect(page.getByText('Not available: Remote control is switched off on the scanner')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Connect' })).toBeDisabled();
});

test('a scanner that never connected, and a service out of reach, say so before connecting', async ({ page, context }) => {
  await signIn(page, fixture.admin);
  await page.goto(wg('/devices'));
  await page.getByRole('link', { name: 'Spare scanner' }).click();
  await expect(page.getByText('Not available: The scanner has never connected to MyScanner.')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Connect' })).toBeDisabled();

  await page.goto(wg(`/devices/${fixture.mpsDeviceId}`));
  await expect(page.getByText('Available')).toBeVisible();
  await context.setOffline(true);
  await page.getByRole('button', { name: 'Check again' }).click();
  await expect(page.getByText('Not available: MyScanner cannot be reached from this browser right now.')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Connect' })).toBeDisabled();
  await screenshot(page, 'remote-unreachable');
  await context.setOffline(false);
});
