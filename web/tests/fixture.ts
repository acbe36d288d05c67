// What the Rust harness (tests/tests/api/web.rs) set up for these tests: the service's
// address, the people who sign in, and the scanners with their measurements.
import { readFileSync } from 'node:fs';

export interface Person {
  email: string;
  password: string;
}

/** A workgroup of the subscription tests, and its admin (who manages it). */
export interface OtherWorkgroup {
  workgroupId: string;
  workgroupName: string;
  admin: Person;
}

export interface Fixture {
  baseUrl: string;
  chromium: string;
  outDir: string;
  screenshotDir: string;
  workgroupId: string;
  workgroupName: string;
  operator: Person;
  admin: Person;
  viewer: Person;
  /** The LVS that keeps uploading while the tests run. */
  liveDeviceId: string;
  mpsDeviceId: string;
  siteIds: string[];
  /** North Pit: the live LVS's site, with list and reference-scan sync on. */
  northSiteId: string;
  /** Measurements scanned before this instant are all stored before the tests start. */
  backlogBefore: string;
  backlogPerDevice: number;
  /** Ports of 127.0.0.1 that answer: the external scan must find exactly these. */
  openPorts: number[];
  /** Also scanned, closed: a test may open it for a while. */
  scannedClosedPort: number;
  /** The MPS's screen: a real VNC server of this size behind its agent. */
  vncGeometry: [number, number];
  /** Whom customers contact about their subscription (the service's `subscriptions.contact`). */
  subscriptionContact: string;
  /** Its period ended three days ago: in its 14 days of grace. */
  inGrace: OtherWorkgroup;
  /** Its period ended forty days ago: lapsed. It has a site and a scanner. */
  lapsed: OtherWorkgroup;
  /** Never had a subscription. */
  unsubscribed: { workgroupId: string; workgroupName: string };
}

const path = process.env.MYSCANNER_WEB_FIXTURE;
if (!path) {
  throw new Error(
    'MYSCANNER_WEB_FIXTURE is not set: the browser tests run from `cargo test` (tests/tests/api/web.rs), which starts the service they test',
  );
}

export const fixture: Fixture = JSON.parse(readFileSync(path, 'utf8'));
