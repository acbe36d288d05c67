// How a subscription reads on screen: its status in words and colour, the fields of its
// terms, and what changed between two versions of them.
import type { Schemas } from './api/client';
import { days, formatDate, formatTime } from './format';

type Status = Schemas['SubscriptionStatus'];
type Terms = Schemas['Terms'];

export const STATUS_NAMES: Record<Status, string> = {
  none: 'No subscription',
  trial: 'Trial',
  active: 'Active',
  grace: 'In grace',
  lapsed: 'Lapsed',
  cancelled: 'Cancelled',
};

/** The badge class of a status (`.badge.ok` …). */
export const STATUS_TONES: Record<Status, 'ok' | 'warn' | 'danger' | 'off'> = {
  none: 'off',
  trial: 'ok',
  active: 'ok',
  grace: 'warn',
  lapsed: 'danger',
  cancelled: 'danger',
};

export const ACTION_NAMES: Record<Schemas['Action'], string> = {
  created: 'Created',
  changed: 'Changed',
  renewed: 'Renewed',
  cancelled: 'Cancelled',
};

const FIELDS: { key: keyof Terms; label: string; show: (terms: Terms) => string }[] = [
  { key: 'plan', label: 'Plan', show: (t) => t.plan },
  { key: 'scanners', label: 'Scanners', show: (t) => String(t.scanners) },
  { key: 'trial', label: 'Trial', show: (t) => (t.trial ? 'yes' : 'no') },
  { key: 'period_start', label: 'Period start', show: (t) => formatDate(t.period_start) },
  { key: 'period_end', label: 'Period end', show: (t) => formatDate(t.period_end) },
  { key: 'grace_days', label: 'Grace', show: (t) => days(t.grace_days) },
  { key: 'cancelled_at', label: 'Cancelled', show: (t) => (t.cancelled_at ? formatDate(t.cancelled_at) : 'no') },
];

export interface TermChange {
  label: string;
  before: string | null;
  after: string;
}

/** What a change did to the terms: every field for a creation, else the fields that
 * changed (a field whose day did not change still counts, its time did). */
export function termChanges(before: Terms | null | undefined, after: Terms): TermChange[] {
  if (!before) return FIELDS.filter((f) => f.key !== 'cancelled_at').map((f) => ({ label: f.label, before: null, after: f.show(after) }));
  return FIELDS.filter((f) => before[f.key] !== after[f.key]).map((f) => {
    const [was, is] = [f.show(before), f.show(after)];
    // The same day, another time: the times tell them apart.
    if (was === is && typeof after[f.key] === 'string') return { label: f.label, before: formatTime(before[f.key] as string), after: formatTime(after[f.key] as string) };
    return { label: f.label, before: was, after: is };
  });
}

/** The day of an instant as a date input holds it (UTC). */
export function dateInput(iso: string | null | undefined): string {
  return iso ? new Date(iso).toISOString().slice(0, 10) : '';
}

/** The instant a date input names: the start of that day, UTC. */
export function fromDateInput(day: string): string {
  return `${day}T00:00:00Z`;
}

/** Whether the contact reads as an e-mail address (then it is a mailto: link). */
export function isEmail(contact: string): boolean {
  return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(contact);
}
