// A load profile as the API gives it, and the colours heights are drawn in (shared by the
// 3D viewer and the 2D heat map, so both read the same).
import type { Schemas } from './api/client';

export type Profile = Schemas['LoadProfileView'];

/** Low to high: blue, cyan, green, yellow, red. */
const STOPS: [number, number, number][] = [
  [49, 54, 149],
  [69, 117, 180],
  [116, 173, 209],
  [171, 217, 233],
  [254, 224, 144],
  [253, 174, 97],
  [244, 109, 67],
  [215, 48, 39],
];

/** The colour of `t` in 0..1 as RGB 0..255. */
export function heightColour(t: number): [number, number, number] {
  const x = Math.min(Math.max(t, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2);
  const f = x - i;
  const a = STOPS[i]!;
  const b = STOPS[i + 1]!;
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/** The highest measured height (0 where nothing was measured). */
export function maxHeight(profile: Profile): number {
  let max = 0;
  for (const row of profile.heights_mm) for (const h of row) if (h > max) max = h;
  return max;
}

export function webglAvailable(): boolean {
  try {
    const canvas = document.createElement('canvas');
    return !!(canvas.getContext('webgl2') ?? canvas.getContext('webgl'));
  } catch {
    return false;
  }
}
