// The workgroup being looked at, with its sites and devices: most pages name sites and
// devices and show times in a site's zone, so they are loaded once per workgroup and
// refreshed when something changes them.
import { all, api, call, type Schemas } from './api/client';
import { session } from './session.svelte';

type Site = Schemas['Site'];
type Device = Schemas['Device'];
type Subscription = Schemas['Subscription'];

class Workgroup {
  id = $state<string | null>(null);
  name = $state('');
  sites = $state<Site[]>([]);
  devices = $state<Device[]>([]);
  /** Its subscription, for the banner and the pages that mention it; null until loaded
   * (or when it could not be: the pages' own calls then say why). */
  subscription = $state<Subscription | null>(null);
  loading = $state(false);
  error = $state<unknown>(null);

  site(id: string | null | undefined): Site | undefined {
    return this.sites.find((s) => s.id === id);
  }

  device(id: string | null | undefined): Device | undefined {
    return this.devices.find((d) => d.id === id);
  }

  /** The time zone a device's times are shown in: its site's. */
  zoneOf(deviceId: string): string {
    return this.site(this.device(deviceId)?.site_id)?.time_zone ?? 'UTC';
  }

  async open(id: string) {
    if (this.id === id) return;
    this.id = id;
    this.sites = [];
    this.devices = [];
    this.subscription = null;
    await Promise.all([this.refresh(), this.refreshSubscription()]);
  }

  async refresh() {
    const id = this.id;
    if (!id) return;
    this.loading = true;
    this.error = null;
    try {
      const path = { workgroup_id: id };
      const [group, sites, devices] = await Promise.all([
        call(api.GET('/api/v1/workgroups/{workgroup_id}', { params: { path } })),
        all((cursor) => call(api.GET('/api/v1/workgroups/{workgroup_id}/sites', { params: { path, query: { limit: 500, cursor } } }))),
        all((cursor) => call(api.GET('/api/v1/workgroups/{workgroup_id}/devices', { params: { path, query: { limit: 500, cursor } } }))),
      ]);
      if (this.id !== id) return;
      this.name = group.name;
      this.sites = sites.sort((a, b) => a.name.localeCompare(b.name));
      this.devices = devices.sort((a, b) => a.name.localeCompare(b.name));
    } catch (error) {
      if (this.id === id) this.error = error;
    } finally {
      this.loading = false;
    }
  }

  async refreshSubscription() {
    const id = this.id;
    if (!id) return;
    try {
      const subscription = await call(api.GET('/api/v1/workgroups/{workgroup_id}/subscription', { params: { path: { workgroup_id: id } } }));
      if (this.id === id) this.subscription = subscription;
    } catch {
      // Not fatal: the banner stays hidden, and a page that needs the subscription says why.
    }
  }

  can(permission: Schemas['Permission']): boolean {
    return !!this.id && session.can(this.id, permission);
  }
}

export const workgroup = new Workgroup();

/** The workgroups the signed-in person can open: all of them for operators. */
export async function listWorkgroups(): Promise<{ id: string; name: string }[]> {
  if (!session.isOperator) {
    return (session.me?.memberships ?? []).map((m) => ({ id: m.workgroup_id, name: m.workgroup_name }));
  }
  const groups = await all((cursor) => call(api.GET('/api/v1/workgroups', { params: { query: { limit: 500, cursor } } })));
  return groups.map((g) => ({ id: g.id, name: g.name })).sort((a, b) => a.name.localeCompare(b.name));
}

