// A site's synchronised records as the dashboard reads them: every live record of a
// collection (following the snapshot's pages), and reference-scan profiles decoded from
// their binary form for the viewer.
import { api, call, type Schemas } from './api/client';
import type { Profile } from './profile';

export async function records(workgroupId: string, siteId: string, collection: Schemas['Collection']): Promise<Schemas['Versioned'][]> {
  const out: Schemas['Versioned'][] = [];
  let after: string | undefined;
  do {
    const page = await call(
      api.GET('/api/v1/workgroups/{workgroup_id}/sites/{site_id}/sync/{collection}', {
        params: { path: { workgroup_id: workgroupId, site_id: siteId, collection }, query: { after, limit: 500 } },
      }),
    );
    out.push(...page.records.filter((r) => !r.deleted));
    after = page.next_after ?? undefined;
  } while (after);
  return out;
}

interface WireProfile {
  rows: number;
  cols: number;
  cell_size_mm: number;
  heights: string;
}

/** `u16-mm-le` heights, base64, as rows of millimetres. */
export function decodeProfile(wire: WireProfile): Profile {
  const bytes = Uint8Array.from(atob(wire.heights), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  const heights_mm = Array.from({ length: wire.rows }, (_, r) =>
    Array.from({ length: wire.cols }, (_, c) => view.getUint16((r * wire.cols + c) * 2, true)),
  );
  return { rows: wire.rows, cols: wire.cols, cell_size_mm: wire.cell_size_mm, heights_mm };
}

export function isLoadList(record: Schemas['Record'] | null | undefined): record is Schemas['LoadList'] {
  return !!record && 'items' in record;
}

export function isReferenceScan(record: Schemas['Record'] | null | undefined): record is Schemas['ReferenceScan'] {
  return !!record && 'truck_id' in record;
}
