// What every browser test shares: signing in, API calls as the same person, screenshots,
// and a watch for errors in the page (a CSP violation or an uncaught exception fails a test).
import { test as base, expect, type Page } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { fixture, type Person } from './fixture';

export { expect, fixture };

export const test = base.extend<{ pageErrors: string[] }>({
  pageErrors: [
    async ({ page }, use) => {
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
      page.on('console', (message) => {
        const text = message.text();
        if (message.type() === 'error' && !/status of (400|401|402|403|404|409|422|429)|ERR_INTERNET_DISCONNECTED/.test(text)) errors.push(text);
      });
      await use(errors);
      expect(errors, 'errors in the page').toEqual([]);
    },
    { auto: true },
  ],
});

export async function signIn(page: Page, who: Person, next = '/') {
  await page.goto(next === '/' ? '/sign-in' : `/sign-in?next=${encodeURIComponent(next)}`);
  await page.getByLabel('E-mail').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).not.toHaveURL(/\/sign-in/);
}

/** The session token the page holds, for asking the API what the page should show. */
export async function tokenOf(page: Page): Promise<string> {
  const stored = await page.evaluate(() => sessionStorage.getItem('myscanner.session'));
  return (JSON.parse(stored!) as { token: string }).token;
}

export async function apiGet<T>(page: Page, path: string): Promise<T> {
  const response = await page.request.get(path, { headers: { authorization: `Bearer ${await tokenOf(page)}` } });
  expect(response.status(), `GET ${path}`).toBe(200);
  return (await response.json()) as T;
}

export async function screenshot(page: Page, name: string) {
  await page.screenshot({ path: `${fixture.screenshotDir}/${name}.png`, fullPage: true });
}

/** No serious or critical accessibility violation on the page as it is now. */
export async function accessible(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`)).toEqual([]);
}

export const wg = (path = '') => `/w/${fixture.workgroupId}${path}`;
