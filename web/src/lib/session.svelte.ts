// Who is signed in, kept for this browser tab only (sessionStorage: closing the tab signs
// out; other tabs and sites cannot read it). The token expires on the service's clock; the
// app returns to sign-in then, and back to the page the person was on after.
import type { components } from './api/schema';
import { location, navigate, withQuery } from './router.svelte';

type Me = components['schemas']['Me'];
type Permission = components['schemas']['Permission'];

const KEY = 'myscanner.session';

interface Stored {
  token: string;
  expiresAt: number;
}

function load(): Stored | null {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as Stored | null;
    return stored && stored.expiresAt > Date.now() ? stored : null;
  } catch {
    return null;
  }
}

class Session {
  #stored = $state<Stored | null>(load());
  me = $state<Me | null>(null);
  /** Why the person was sent to sign in, shown there. */
  notice = $state<string | null>(null);
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    this.#arm();
  }

  get token(): string | null {
    return this.#stored?.token ?? null;
  }

  get isOperator(): boolean {
    return this.me?.is_operator ?? false;
  }

  begin(token: string, expiresIn: number) {
    this.#stored = { token, expiresAt: Date.now() + expiresIn * 1000 };
    sessionStorage.setItem(KEY, JSON.stringify(this.#stored));
    this.notice = null;
    this.#arm();
  }

  /** Signs out: forgets the token here (the service's token simply runs out). */
  end(notice: string | null = null) {
    this.#stored = null;
    this.me = null;
    this.notice = notice;
    sessionStorage.removeItem(KEY);
    clearTimeout(this.#timer);
  }

  /** The service refused the token: back to sign-in, then to this page. */
  expired() {
    if (!this.#stored) return;
    this.end('Your session has ended. Sign in again to carry on where you were.');
    if (location.path !== '/sign-in') navigate(withQuery('/sign-in', { next: location.here }), { replace: true });
  }

  /** The caller's permissions in a workgroup; operators manage every workgroup. */
  permissions(workgroupId: string): Permission[] {
    const granted = this.me?.memberships.find((m) => m.workgroup_id === workgroupId)?.permissions ?? [];
    return this.isOperator && !granted.includes('manage_workgroup') ? [...granted, 'manage_workgroup'] : granted;
  }

  can(workgroupId: string, permission: Permission): boolean {
    return this.permissions(workgroupId).includes(permission);
  }

  #arm() {
    clearTimeout(this.#timer);
    const stored = this.#stored;
    if (!stored) return;
    // setTimeout holds at most ~24.8 days; tokens live minutes.
    this.#timer = setTimeout(() => this.expired(), Math.min(stored.expiresAt - Date.now(), 2 ** 31 - 1));
  }
}

export const session = new Session();
