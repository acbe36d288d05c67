import { accessible, expect, fixture, screenshot, signIn, test, wg } from './helpers';

test('signing in opens the workgroup overview with its scanners online', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/sign-in$/);
  await screenshot(page, 'sign-in');
  await accessible(page);

  await signIn(page, fixture.admin);
  await expect(page).toHaveURL(new RegExp(`${wg()}$`));
  await expect(page.getByRole('heading', { level: 1 })).toHaveText(fixture.workgroupName);
  const cards = page.getByRole('region', { name: 'Scanners' });
  await expect(cards).toContainText('2 scanners online');
  await expect(page.getByRole('table').first()).toContainText('North Pit');
  await screenshot(page, 'overview');
  await accessible(page);
});

test('a wrong password is refused with a message', async ({ page }) => {
  await page.goto('/sign-in');
  await page.getByLabel('E-mail').fill(fixture.admin.email);
  await page.getByLabel('Password').fill('not the password at all');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  await expect(page).toHaveURL(/\/sign-in/);
  await screenshot(page, 'sign-in-refused');
});

test('an expired session returns to sign-in and then to the page the user was on', async ({ page }) => {
  await signIn(page, fixture.admin);
  const deep = `${wg('/measurements')}?device_id=${fixture.mpsDeviceId}`;
  await page.goto(deep);
  await expect(page.getByRole('table')).toBeVisible();
  // The service no longer accepts this token (as when it expires): the next call is a 401.
  await page.evaluate(() => {
    const stored = JSON.parse(sessionStorage.getItem('myscanner.session')!);
    stored.token = `${stored.token}x`;
    sessionStorage.setItem('myscanner.session', JSON.stringify(stored));
  });
  await page.reload();
  await expect(page).toHaveURL(/\/sign-in\?next=/);
  await expect(page.getByRole('status').filter({ hasText: 'session has ended' })).toBeVisible();
  await screenshot(page, 'session-expired');
  await page.getByLabel('E-mail').fill(fixture.admin.email);
  await page.getByLabel('Password').fill(fixture.admin.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(deep);
  await expect(page.getByRole('table')).toBeVisible();
});

test('signing out forgets the session', async ({ page }) => {
  await signIn(page, fixture.admin);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await page.goto(wg('/devices'));
  await expect(page).toHaveURL(/\/sign-in\?next=/);
});
