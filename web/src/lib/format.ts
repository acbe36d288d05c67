// How times, quantities and states read on screen. Times show in the site's time zone
// (or UTC when the person asks), always with the zone named.

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string, withSeconds = true): Intl.DateTimeFormat {
  const key = `${timeZone}|${withSeconds}`;
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', {
      timeZone,
      year: 'numeric',
      month: 'short',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: withSeconds ? '2-digit' : undefined,
      hourCycle: 'h23',
      timeZoneName: 'short',
    });
    formatters.set(key, f);
  }
  return f;
}

/** `03 Dec 2026, 14:05:09 GMT+8` in `timeZone`. */
export function formatTime(iso: string | null | undefined, timeZone = 'UTC'): string {
  if (!iso) return '—';
  return formatter(timeZone).format(new Date(iso));
}

const relativeFormat = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

/** `3 minutes ago`, for a time in the past. */
export function relative(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const units: [Intl.RelativeTimeFormatUnit, number][] = [
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return Math.abs(seconds) < 10 ? 'just now' : relativeFormat.format(seconds, 'second');
}

/** A device counts as online when it was heard from within this long. Agents touch
 * `last_seen_at` on their requests at most every 30 s and poll about once a minute. */
export const ONLINE_WITHIN_MINUTES = 5;

export function isOnline(lastSeen: string | null | undefined, now = Date.now()): boolean {
  return !!lastSeen && now - new Date(lastSeen).getTime() < ONLINE_WITHIN_MINUTES * 60_000;
}

export function quantity(value: number | null | undefined, unit: string, digits = 2): string {
  if (value === null || value === undefined) return '—';
  return `${value.toLocaleString('en-GB', { minimumFractionDigits: digits, maximumFractionDigits: digits })} ${unit}`;
}

export function count(value: number): string {
  return value.toLocaleString('en-GB');
}

/** The offset of `timeZone` from UTC at `instant`, in minutes. */
function offsetMinutes(instant: Date, timeZone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  }).formatToParts(instant);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((asUtc - instant.getTime()) / 60_000);
}

/** The instant a wall-clock time (`2026-12-02T07:30`) names in `timeZone`. */
export function zonedToInstant(local: string, timeZone: string): Date {
  const [date, time = '00:00'] = local.split('T');
  const [y, mo, d] = date!.split('-').map(Number);
  const [h, mi] = time.split(':').map(Number);
  const guess = Date.UTC(y!, mo! - 1, d!, h!, mi!);
  // Twice: the offset at the guess may differ from the offset at the answer (DST changes).
  let instant = guess - offsetMinutes(new Date(guess), timeZone) * 60_000;
  instant = guess - offsetMinutes(new Date(instant), timeZone) * 60_000;
  return new Date(instant);
}

/** The wall-clock time (`2026-12-02T07:30`) of an instant in `timeZone`, for inputs. */
export function instantToZoned(iso: string, timeZone: string): string {
  const instant = new Date(iso);
  const shifted = new Date(instant.getTime() + offsetMinutes(instant, timeZone) * 60_000);
  return shifted.toISOString().slice(0, 16);
}

/** Today in `timeZone`, as the instants it starts and ends at. */
export function today(timeZone: string, now = new Date()): { from: Date; to: Date } {
  const day = instantToZoned(now.toISOString(), timeZone).slice(0, 10);
  const next = new Date(`${day}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return { from: zonedToInstant(`${day}T00:00`, timeZone), to: zonedToInstant(`${next.toISOString().slice(0, 10)}T00:00`, timeZone) };
}

export const PERMISSION_NAMES = {
  view_data: 'View data',
  control_devices: 'Control devices',
  manage_workgroup: 'Manage workgroup',
} as const;

type Changes = {
  new_ports: number[];
  gone_ports: number[];
  new_hosts: { ip: string; mac?: string | null }[];
  gone_hosts: { ip: string; mac?: string | null }[];
};

/** "2 new, 1 gone" since the previous scan, or null when nothing changed. */
export function changeSummary(changes: Changes | null | undefined): string | null {
  if (!changes) return null;
  const added = changes.new_ports.length + changes.new_hosts.length;
  const gone = changes.gone_ports.length + changes.gone_hosts.length;
  if (!added && !gone) return null;
  return [added ? `${added} new` : '', gone ? `${gone} gone` : ''].filter(Boolean).join(', ');
}

/** The changes in full: "new ports 8080; gone ports 22". */
export function changeDetail(changes: Changes): string {
  const host = (h: { ip: string; mac?: string | null }) => (h.mac ? `${h.ip} (${h.mac})` : h.ip);
  return [
    changes.new_ports.length ? `new ports ${changes.new_ports.join(', ')}` : '',
    changes.gone_ports.length ? `gone ports ${changes.gone_ports.join(', ')}` : '',
    changes.new_hosts.length ? `new hosts ${changes.new_hosts.map(host).join(', ')}` : '',
    changes.gone_hosts.length ? `gone hosts ${changes.gone_hosts.map(host).join(', ')}` : '',
  ]
    .filter(Boolean)
    .join('; ');
}

const dateFormat = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', day: 'numeric', month: 'short', year: 'numeric' });

/** `8 Jul 2026`: the day (in UTC) of an instant, for subscription periods. */
export function formatDate(iso: string | null | undefined): string {
  return iso ? dateFormat.format(new Date(iso)) : '—';
}

/** `1 day`, `11 days`. */
export function days(n: number): string {
  return n === 1 ? '1 day' : `${count(n)} days`;
}
