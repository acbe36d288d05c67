// The measurement filters of the API, as the URL holds them: the same names and values the
// API takes, so a shared link is the API query and the page shows what the API answers.
export const FILTERS = [
  'site_id',
  'device_id',
  'from',
  'to',
  'truck_id',
  'reference_scan_id',
  'load_detail',
  'min_volume_m3',
  'max_volume_m3',
  'quality_flags',
] as const;

export type Filter = (typeof FILTERS)[number];

export type Filters = Partial<Record<Filter, string>>;

export function readFilters(query: URLSearchParams): Filters {
  const filters: Filters = {};
  for (const name of FILTERS) {
    const value = query.get(name);
    if (value) filters[name] = value;
  }
  return filters;
}

/** The filters as API query parameters (numbers as numbers). */
export function apiFilters(filters: Filters) {
  const { min_volume_m3, max_volume_m3, ...rest } = filters;
  return {
    ...rest,
    min_volume_m3: min_volume_m3 ? Number(min_volume_m3) : undefined,
    max_volume_m3: max_volume_m3 ? Number(max_volume_m3) : undefined,
  };
}
