//! Reference-scan and load-detail-list sync between the scanners of a site, through the
//! cloud (`/api/v1/agent/sync/{collection}/…`).
//!
//! - Every change on a site gets the site's next revision; a scanner pulls the changes
//!   since the last revision it has (long poll), and a new scanner restores a snapshot.
//! - A deleted record stays as a tombstone, so a scanner that was offline learns of the
//!   delete and never brings the record back.
//! - A pushed edit names the revision of the record it was based on. It applies when that
//!   is still the record's revision; otherwise the record changed meanwhile (or was
//!   deleted) and the edit is refused with the record as it stands: the first edit to reach
//!   the cloud wins, every scanner ends up with it, and the refused scanner learns why.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::LoadProfile;

/// What is synchronised; each is enabled on a scanner on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Collection {
    ReferenceScans,
    LoadLists,
}

impl Collection {
    pub const ALL: [Collection; 2] = [Collection::ReferenceScans, Collection::LoadLists];

    /// The path segment and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::ReferenceScans => "reference-scans",
            Collection::LoadLists => "load-lists",
        }
    }

    pub fn parse(s: &str) -> Option<Collection> {
        Collection::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An empty truck's reference scan: what a load is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceScan {
    #[schema(
        example = "TRK-0412",
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub truck_id: String,
    #[schema(
        example = "CAT 777 #12",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub truck_name: String,
    /// Volume of the empty body's carry-back at reference time, m³.
    pub tare_volume_m3: f64,
    /// The empty body's surface, in the load profiles' binary form.
    #[schema(value_type = Object)]
    pub profile: LoadProfile,
}

/// A named selection list of load details (materials, sources, customers…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadList {
    #[schema(
        example = "Materials",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: String,
    pub items: Vec<LoadListItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadListItem {
    #[schema(
        example = "GRAV20",
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub code: String,
    #[schema(
        example = "Gravel 20 mm",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub label: String,
    pub active: bool,
    pub order: i32,
}

/// A record of either collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Record {
    ReferenceScan(ReferenceScan),
    LoadList(LoadList),
}

impl Record {
    pub fn collection(&self) -> Collection {
        match self {
            Record::ReferenceScan(_) => Collection::ReferenceScans,
            Record::LoadList(_) => Collection::LoadLists,
        }
    }

    /// What the cloud accepts, checked on both sides: a scanner refuses an invalid edit
    /// locally instead of queueing one the cloud would refuse. `Err((field, why))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.checked().map(drop)
    }

    /// [`Record::validate`], handing back what checking a reference scan decoded: its
    /// profile's binary heights (what the cloud stores).
    pub fn checked(&self) -> Result<Option<Vec<u8>>, (String, String)> {
        let text_ok = crate::text::printable_not_blank;
        let invalid = |field: &str, why: &str| Err((field.to_owned(), why.to_owned()));
        match self {
            Record::ReferenceScan(scan) => {
                let heights = scan.profile.decode().map_err(|why| ("record.profile".to_owned(), why))?;
                if !text_ok(&scan.truck_id, 64) || !text_ok(&scan.truck_name, 200) {
                    return invalid(
                        "record.truck_id",
                        "truck_id 1–64 and truck_name 1–200 characters, not only spaces, no control characters",
                    );
                }
                if !(scan.tare_volume_m3.is_finite() && (0.0..=1000.0).contains(&scan.tare_volume_m3)) {
                    return invalid("record.tare_volume_m3", "0–1000 m³");
                }
                Ok(Some(heights))
            }
            Record::LoadList(list) => {
                if !text_ok(&list.name, 100) {
                    return invalid("record.name", "1–100 characters, not only spaces, no control characters");
                }
                if list.items.len() > MAX_LIST_ITEMS {
                    return invalid("record.items", "at most 10000 items");
                }
                let mut codes = std::collections::HashSet::new();
                for (i, item) in list.items.iter().enumerate() {
                    if !text_ok(&item.code, 64) || !text_ok(&item.label, 200) {
                        return Err((
                            format!("record.items[{i}]"),
                            "code 1–64 and label 1–200 characters, not only spaces, no control characters".into(),
                        ));
                    }
                    if !codes.insert(item.code.trim()) {
                        return Err((format!("record.items[{i}].code"), "codes are unique within a list".into()));
                    }
                }
                Ok(None)
            }
        }
    }
}

pub const MAX_LIST_ITEMS: usize = 10_000;

/// A record as the cloud holds it: its data, or its tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Versioned {
    pub id: Uuid,
    /// The site revision of its latest change.
    pub revision: i64,
    pub deleted: bool,
    /// Absent for a tombstone.
    pub record: Option<Record>,
    /// The scanner that made the latest change, if a scanner did.
    pub changed_by_device: Option<Uuid>,
    /// The user that made the latest change, if a user did (in the dashboard).
    pub changed_by_user: Option<Uuid>,
    pub changed_at: DateTime<Utc>,
}

/// Changes of a collection since a revision, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = SyncChanges)]
pub struct Changes {
    pub changes: Vec<Versioned>,
    /// Pull again from here.
    pub revision: i64,
    /// More changes are waiting: pull again at once.
    pub more: bool,
}

/// A scanner's edits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub edits: Vec<Edit>,
}

/// One edit: new data for a record, or its deletion (`record` absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// The edit's own id: a push sent again (its answer lost) is recognised, not refused.
    pub edit_id: Uuid,
    /// Chosen by whoever creates the record.
    pub id: Uuid,
    /// The record's revision the edit was based on; 0 for a new record.
    pub base_revision: i64,
    pub record: Option<Record>,
}

/// What became of each edit, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushResult {
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    /// `false`: the record had changed since the edit's base; `current` is what stands.
    pub applied: bool,
    pub current: Versioned,
}

/// A page of the live records of a collection, for a new or replaced scanner.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    pub records: Vec<Versioned>,
    /// The site's revision when this page was read: after the last page, pull changes from
    /// the first page's revision (changes made while paging arrive that way).
    pub revision: i64,
    /// The next page's `after`; absent on the last page.
    pub next_after: Option<Uuid>,
}

#[cfg(test)]
mod schema_tests {
    use utoipa::PartialSchema;

    /// The patterns written in the schema attributes are the ones the checks use.
    #[test]
    fn documented_patterns_are_the_checked_ones() {
        for schema in [super::ReferenceScan::schema(), super::LoadList::schema(), super::LoadListItem::schema()] {
            let text = serde_json::to_string(&schema).unwrap();
            let quoted = serde_json::to_string(crate::text::PRINTABLE_NOT_BLANK).unwrap();
            assert!(text.contains(&format!("\"pattern\":{quoted}")), "{text}");
        }
    }
}
