// The app's pages live at real paths (`/w/<workgroup>/measurements?device_id=…`) so a view
// can be bookmarked and shared; the service answers every such path with index.html.

class Location {
  path = $state(window.location.pathname);
  search = $state(window.location.search);

  get query(): URLSearchParams {
    return new URLSearchParams(this.search);
  }

  /** The path and query, as `next` after sign-in takes them. */
  get here(): string {
    return this.path + this.search;
  }

  sync() {
    this.path = window.location.pathname;
    this.search = window.location.search;
  }
}

export const location = new Location();

window.addEventListener('popstate', () => location.sync());

export function navigate(to: string, { replace = false } = {}) {
  if (to === location.here) return;
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  location.sync();
  if (!replace) window.scrollTo(0, 0);
}

/** Follows same-origin links inside the app without reloading it. */
export function interceptLinks(event: MouseEvent) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = (event.target as Element | null)?.closest?.('a');
  if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
  const url = new URL(anchor.href, window.location.href);
  if (url.origin !== window.location.origin || url.pathname.startsWith('/api/')) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}

/** Matches `/w/:workgroup/devices/:device` against a path: the named parts, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const got = path.split('/').filter(Boolean);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = decodeURIComponent(got[i]!);
    if (w.startsWith(':')) params[w.slice(1)] = g;
    else if (w !== g) return null;
  }
  return params;
}

/** A path with a query built from the entries that have a value. */
export function withQuery(path: string, query: Record<string, string | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value) params.set(key, value);
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}
