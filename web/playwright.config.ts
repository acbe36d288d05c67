// Browser tests of the dashboard in Debian's Chromium (nothing downloads a browser), against
// a real service, database, broker and simulated scanner. They are started by the Rust test
// tests/tests/api/web.rs, which sets all of that up and writes the fixture this reads.
import { defineConfig } from '@playwright/test';
import { fixture } from './tests/fixture';

export default defineConfig({
  testDir: 'tests',
  // One browser at a time: the machine has two cores, shared with the service under test.
  workers: 1,
  fullyParallel: false,
  forbidOnly: true,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 20_000 },
  reporter: [['list']],
  outputDir: `${fixture.outDir}/test-results`,
  use: {
    baseURL: fixture.baseUrl,
    browserName: 'chromium',
    viewport: { width: 1366, height: 900 },
    colorScheme: 'light',
    locale: 'en-GB',
    timezoneId: 'UTC',
    acceptDownloads: true,
    launchOptions: {
      executablePath: fixture.chromium,
      args: [
        '--no-sandbox',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        // Headless Chromium draws WebGL here only through SwiftShader.
        '--use-angle=swiftshader',
        '--enable-unsafe-swiftshader',
      ],
    },
  },
});
