// Subscriptions: the banner a workgroup's people see in grace and once paused, the calm note
// of a paused page, the workgroup's subscription page with its history, and the operators'
// page that lists, filters, creates, changes, renews and cancels. The tests run in this
// order (one worker): the operator renews the lapsed workgroup after its admin saw it paused.
import type { Page } from '@playwright/test';
import type { Schemas } from '../src/lib/api/client';
import { accessible, apiGet, expect, fixture, screenshot, signIn, test, wg } from './helpers';

const banner = (page: Page) => page.getByRole('complementary', { name: 'Subscription' });

async function signOut(page: Page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in/);
}

/** A date input's value `days` from today (UTC). */
function dayFromNow(days: number): string {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

test('in grace: a banner with the days left and whom to contact; everything still works', async ({ page }) => {
  const { inGrace } = fixture;
  await signIn(page, inGrace.admin);
  await expect(page).toHaveURL(`/w/${inGrace.workgroupId}`);
  const s = await apiGet<Schemas['Subscription']>(page, `/api/v1/workgroups/${inGrace.workgroupId}/subscription`);
  expect(s.status).toBe('grace');
  expect(s.days_left).toBeGreaterThanOrEqual(10);

  await expect(banner(page)).toContainText('Your subscription ended on');
  await expect(banner(page)).toContainText(`cloud features keep working for ${s.days_left} more days`);
  await expect(banner(page).getByRole('link', { name: fixture.subscriptionContact })).toHaveAttribute('href', `mailto:${fixture.subscriptionContact}`);
  await screenshot(page, 'subscription-banner-grace');
  await accessible(page);

  // In grace the cloud features still work: no note of a pause.
  await page.getByRole('navigation', { name: 'Workgroup' }).getByRole('link', { name: 'Measurements' }).click();
  await expect(page.getByText('No measurements match these filters.')).toBeVisible();
  await expect(page.getByText(/Paused while the subscription/)).toHaveCount(0);

  await banner(page).getByRole('link', { name: 'Subscription details' }).click();
  await expect(page).toHaveURL(`/w/${inGrace.workgroupId}/subscription`);
  await expect(page.getByRole('heading', { name: 'Subscription', level: 1 })).toBeVisible();
  await expect(banner(page).getByRole('link', { name: 'Subscription details' })).toHaveCount(0);
  const glance = page.getByRole('region', { name: 'Subscription at a glance' });
  await expect(glance).toContainText('In grace');
  await expect(glance).toContainText('0 / 10');
  await expect(glance).toContainText(String(s.days_left));
  const facts = page.locator('dl.facts');
  await expect(facts).toContainText('Fleet 10');
  await expect(facts).toContainText('14 days after the period');
  // Admins see who set it up, and the terms they gave.
  const history = page.getByRole('table');
  await expect(history.getByRole('row')).toHaveCount(2);
  await expect(history).toContainText(fixture.operator.email);
  await expect(history).toContainText('Created');
  await expect(history).toContainText('Scanners: 10');
  // Not an operator: no forms.
  await expect(page.getByRole('button', { name: /Renew|Cancel subscription/ })).toHaveCount(0);
  await screenshot(page, 'subscription-grace');
  await accessible(page);
});

test('a viewer sees the subscription, without its history', async ({ page }) => {
  await signIn(page, fixture.viewer);
  await page.getByRole('navigation', { name: 'Workgroup' }).getByRole('link', { name: 'Subscription' }).click();
  await expect(page).toHaveURL(wg('/subscription'));
  await expect(page.getByRole('region', { name: 'Subscription at a glance' })).toContainText('Active');
  await expect(page.locator('dl.facts')).toContainText(fixture.subscriptionContact);
  await expect(banner(page)).toHaveCount(0);
  await expect(page.getByRole('heading', { name: 'History' })).toHaveCount(0);
  await screenshot(page, 'subscription-active-viewer');
});

test('lapsed: the banner says the cloud features are paused, and the pages explain calmly', async ({ page }) => {
  const { lapsed } = fixture;
  await signIn(page, lapsed.admin);
  await expect(page).toHaveURL(`/w/${lapsed.workgroupId}`);
  await expect(banner(page)).toContainText(/Your subscription ended on .+; cloud features are paused since/);
  await expect(banner(page)).toContainText('Measurements from your scanners are still stored and nothing is deleted');
  await expect(banner(page)).toContainText(`contact ${fixture.subscriptionContact} to renew`);
  // The overview's figures of today are a cloud feature: a note, not an error.
  await expect(page.getByRole('status').filter({ hasText: 'Paused while the subscription is not active' })).toBeVisible();
  await expect(page.getByRole('alert')).toHaveCount(0);
  await screenshot(page, 'subscription-banner-lapsed');
  await accessible(page);

  await page.getByRole('navigation', { name: 'Workgroup' }).getByRole('link', { name: 'Measurements' }).click();
  const note = page.getByRole('status').filter({ hasText: 'Paused while the subscription is not active' });
  await expect(note).toContainText('measurements from its scanners are still stored and nothing is deleted');
  await expect(note).toContainText(fixture.subscriptionContact);
  await expect(note.getByRole('link', { name: 'About the subscription' })).toHaveAttribute('href', `/w/${lapsed.workgroupId}/subscription`);
  await expect(page.getByRole('alert')).toHaveCount(0);
  await expect(page.getByText('No measurements match these filters.')).toHaveCount(0);
  await screenshot(page, 'measurements-paused');
  await accessible(page);

  // Scanners and sites stay available; remote control says why it is not.
  await page.getByRole('navigation', { name: 'Workgroup' }).getByRole('link', { name: 'Devices' }).click();
  await page.getByRole('link', { name: 'Crusher feed' }).click();
  await expect(page.getByRole('heading', { name: 'Crusher feed' })).toBeVisible();
  await expect(page.getByText('Not available: Remote control is paused while the workgroup’s subscription is not active.')).toBeVisible();
  await screenshot(page, 'device-paused');

  await page.goto(`/w/${lapsed.workgroupId}/subscription`);
  await expect(page.getByRole('region', { name: 'Subscription at a glance' })).toContainText('Lapsed');
  await expect(page.locator('dl.facts')).toContainText(/none: paused since/);
  await expect(page.getByText('Paused now: measurements, summaries and exports')).toBeVisible();
  await screenshot(page, 'subscription-lapsed');
  await accessible(page);
});

test('an operator lists, filters and pages every subscription, renews a lapsed one, and creates, changes and cancels another', async ({ page }) => {
  const { lapsed, inGrace, unsubscribed } = fixture;
  await signIn(page, fixture.operator);
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Subscriptions' }).click();
  await expect(page).toHaveURL('/subscriptions');
  const rows = page.locator('table.subscriptions tbody tr');
  const row = (name: string) => page.getByRole('row', { name: new RegExp(name) });
  await expect(rows).toHaveCount(4);
  await expect(row(fixture.workgroupName)).toContainText('Active');
  await expect(row(inGrace.workgroupName)).toContainText('In grace');
  await expect(row(lapsed.workgroupName)).toContainText('Lapsed');
  await expect(row(unsubscribed.workgroupName)).toContainText('No subscription');
  await screenshot(page, 'subscriptions');
  await accessible(page);

  // Filters, in the URL with the API's names.
  await page.getByLabel('Status').selectOption('lapsed');
  await expect(page).toHaveURL('/subscriptions?status=lapsed');
  await expect(rows).toHaveCount(1);
  await expect(row(lapsed.workgroupName)).toBeVisible();
  await page.getByLabel('Status').selectOption('');
  await page.getByLabel('Ending within 30 days').check();
  await expect(page).toHaveURL('/subscriptions?ending_within_days=30');
  await expect(rows).toHaveCount(1);
  await expect(row(inGrace.workgroupName)).toContainText('In grace');
  await screenshot(page, 'subscriptions-ending-soon');
  await page.getByRole('link', { name: 'Show all' }).click();
  await expect(rows).toHaveCount(4);

  // Pages: two at a time, then the rest.
  await page.goto('/subscriptions?limit=2');
  await expect(rows).toHaveCount(2);
  await page.getByRole('button', { name: 'Load more' }).click();
  await expect(rows).toHaveCount(4);
  await expect(page.getByRole('button', { name: 'Load more' })).toHaveCount(0);

  // Renew the lapsed workgroup: a new period from now.
  await page.goto('/subscriptions?status=lapsed');
  await page.getByRole('button', { name: `Renew… subscription of ${lapsed.workgroupName}` }).click();
  let dialog = page.getByRole('dialog');
  await expect(dialog.getByRole('heading')).toContainText(`Renew · ${lapsed.workgroupName}`);
  await expect(dialog).toContainText('A new period starts now');
  await expect(dialog.getByLabel('New period end (UTC)')).toHaveValue(dayFromNow(365));
  await screenshot(page, 'subscription-renew');
  await accessible(page);
  await dialog.getByRole('button', { name: 'Renew' }).click();
  await expect(dialog).toHaveCount(0);
  await expect(row(lapsed.workgroupName)).toContainText('Active');
  await expect(row(lapsed.workgroupName)).toContainText('(365 days)');

  // A workgroup without one: created as a trial (a period end before its start is refused
  // beside its field), changed, then cancelled after a confirmation.
  await page.goto('/subscriptions?status=none');
  await page.getByRole('button', { name: `Create… subscription of ${unsubscribed.workgroupName}` }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('Plan').fill('Trial 3');
  await dialog.getByLabel('Scanners covered').fill('3');
  await dialog.getByLabel('Period end (UTC)').fill('2020-01-01');
  await dialog.getByLabel('Trial period').check();
  await dialog.getByRole('button', { name: 'Create subscription' }).click();
  await expect(dialog.getByText('must be after period_start')).toBeVisible();
  await screenshot(page, 'subscription-create-error');
  await dialog.getByLabel('Period end (UTC)').fill(dayFromNow(30));
  await dialog.getByRole('button', { name: 'Create subscription' }).click();
  await expect(dialog).toHaveCount(0);
  await expect(row(unsubscribed.workgroupName)).toContainText('Trial');
  await expect(row(unsubscribed.workgroupName)).toContainText('0 / 3');

  await page.getByRole('button', { name: `Change… subscription of ${unsubscribed.workgroupName}` }).click();
  dialog = page.getByRole('dialog');
  await expect(dialog.getByLabel('Plan')).toHaveValue('Trial 3');
  await dialog.getByLabel('Plan').fill('Fleet 5');
  await dialog.getByLabel('Scanners covered').fill('5');
  await dialog.getByLabel('Trial period').uncheck();
  await dialog.getByLabel('Grace days').fill('7');
  await screenshot(page, 'subscription-change');
  await dialog.getByRole('button', { name: 'Save terms' }).click();
  await expect(dialog).toHaveCount(0);
  await expect(row(unsubscribed.workgroupName)).toContainText('Active');
  await expect(row(unsubscribed.workgroupName)).toContainText('Fleet 5');
  await expect(row(unsubscribed.workgroupName)).toContainText('0 / 5');

  await page.getByRole('button', { name: `Cancel… subscription of ${unsubscribed.workgroupName}` }).click();
  dialog = page.getByRole('dialog');
  await expect(dialog.getByRole('heading')).toHaveText(`Cancel the subscription of ${unsubscribed.workgroupName}?`);
  await screenshot(page, 'subscription-cancel');
  // Kept the first time; cancelled the second.
  await dialog.getByRole('button', { name: 'Keep it' }).click();
  await expect(row(unsubscribed.workgroupName)).toContainText('Active');
  await page.getByRole('button', { name: `Cancel… subscription of ${unsubscribed.workgroupName}` }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel subscription' }).click();
  await expect(row(unsubscribed.workgroupName)).toContainText('Cancelled');
  await expect(page.getByRole('button', { name: `Cancel… subscription of ${unsubscribed.workgroupName}` })).toHaveCount(0);
  await screenshot(page, 'subscriptions-changed');

  // The workgroup's own page: paused, and every change in its history, newest first.
  await row(unsubscribed.workgroupName).getByRole('link', { name: unsubscribed.workgroupName }).click();
  await expect(page).toHaveURL(`/w/${unsubscribed.workgroupId}/subscription`);
  await expect(banner(page)).toContainText('Your subscription was cancelled; cloud features are paused since');
  const history = page.getByRole('table');
  await expect(history.locator('tbody tr')).toHaveCount(3);
  const [cancelled, changed, created] = [0, 1, 2].map((i) => history.locator('tbody tr').nth(i));
  await expect(cancelled!).toContainText('Cancelled');
  await expect(changed!).toContainText('Changed');
  await expect(changed!).toContainText(/Plan:\s*Trial 3\s*→\s*became\s*Fleet 5/);
  await expect(changed!).toContainText(/Scanners:\s*3\s*→\s*became\s*5/);
  await expect(changed!).toContainText(/Grace:\s*14 days\s*→\s*became\s*7 days/);
  await expect(created!).toContainText('Created');
  await expect(history).toContainText(fixture.operator.email);
  await screenshot(page, 'subscription-history');
  await accessible(page);

  // The lapsed workgroup's admin: no banner now, after a reload too, and its data is back.
  await signOut(page);
  await signIn(page, lapsed.admin);
  await expect(page).toHaveURL(`/w/${lapsed.workgroupId}`);
  await expect(page.getByRole('heading', { name: lapsed.workgroupName })).toBeVisible();
  // Today's figures (a cloud feature) are back.
  const today = page.getByRole('link', { name: 'East Face' });
  await expect(today).toBeVisible();
  await page.reload();
  await expect(today).toBeVisible();
  await expect(banner(page)).toHaveCount(0);
  await expect(page.getByRole('status').filter({ hasText: 'Paused' })).toHaveCount(0);
  await screenshot(page, 'overview-renewed');
});

test('an operator creates a workgroup with its subscription', async ({ page }) => {
  await signIn(page, fixture.operator);
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Workgroups' }).click();
  const form = page.locator('form.new-workgroup');
  await form.getByLabel('Name').fill('Uplands Gravel');
  await form.getByLabel('Plan').fill('Fleet 2');
  await form.getByLabel('Scanners covered').fill('2');
  await form.getByLabel('Trial period').check();
  await screenshot(page, 'workgroup-new-with-subscription');
  await accessible(page);
  await form.getByRole('button', { name: 'Create workgroup' }).click();
  await expect(page.getByRole('link', { name: 'Uplands Gravel' })).toBeVisible();
  await page.getByRole('navigation', { name: 'Account' }).getByRole('link', { name: 'Subscriptions' }).click();
  await page.getByLabel('Status').selectOption('trial');
  const row = page.getByRole('row', { name: /Uplands Gravel/ });
  await expect(row).toContainText('Fleet 2');
  await expect(row).toContainText('0 / 2');
  await expect(row).toContainText('(365 days)');
});
