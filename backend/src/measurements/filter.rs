//! The filters every measurement listing, export and summary shares, and the SQL they
//! become. SQL is assembled with `QueryBuilder` from static fragments and bound values only
//! (no caller text ever reaches the SQL), so that each query names only the conditions it
//! has and the planner can use the time index for the keyset bound.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::{Error, FieldError};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest scan first.
    Asc,
    /// Newest scan first (the default).
    #[default]
    Desc,
}

/// Which measurements: every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MeasurementFilter {
    pub site_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    /// Scanned at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Scanned before this time (RFC 3339); at or before `from`, nothing matches.
    pub to: Option<DateTime<Utc>>,
    /// The truck's identity on site, e.g. `T07`.
    #[param(min_length = 1, max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$")]
    pub truck_id: Option<String>,
    pub reference_scan_id: Option<Uuid>,
    /// Load details that must all be present, as `list:code` pairs separated by commas,
    /// e.g. `material:GRAVEL20,destination:CRUSHER`.
    #[param(
        example = "material:GRAVEL20",
        pattern = r"^[^,:\u0000-\u001F\u007F-\u009F]*[^,:\s\u0000-\u001F\u007F-\u009F][^,:\u0000-\u001F\u007F-\u009F]*:[^,\u0000-\u001F\u007F-\u009F]*[^,\s\u0000-\u001F\u007F-\u009F][^,\u0000-\u001F\u007F-\u009F]*(,[^,:\u0000-\u001F\u007F-\u009F]*[^,:\s\u0000-\u001F\u007F-\u009F][^,:\u0000-\u001F\u007F-\u009F]*:[^,\u0000-\u001F\u007F-\u009F]*[^,\s\u0000-\u001F\u007F-\u009F][^,\u0000-\u001F\u007F-\u009F]*)*$"
    )]
    pub load_detail: Option<String>,
    /// At least this volume (with `max_volume_m3` below it, nothing matches).
    #[param(minimum = 0)]
    pub min_volume_m3: Option<f64>,
    #[param(minimum = 0)]
    pub max_volume_m3: Option<f64>,
    /// Quality flags that must all be raised, separated by commas.
    #[param(
        example = "low_point_density",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^,\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub quality_flags: Option<String>,
}

/// A filter checked and decoded, ready to become SQL.
#[derive(Debug, Clone)]
pub struct Conditions {
    pub workgroup_id: Uuid,
    filter: MeasurementFilter,
    load_details: Option<serde_json::Value>,
    quality_flags: Option<Vec<String>>,
}

fn invalid(field: &str, message: &str) -> FieldError {
    FieldError::new(field, message)
}

impl MeasurementFilter {
    /// Checks the filter; every problem is reported at once (400 with field detail).
    pub fn conditions(self, workgroup_id: Uuid) -> Result<Conditions, Error> {
        // An empty range (`to` at or before `from`, a minimum above the maximum) is no error:
        // nothing matches it.
        let mut errors = vec![];
        for (field, value) in [("min_volume_m3", self.min_volume_m3), ("max_volume_m3", self.max_volume_m3)] {
            if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
                errors.push(invalid(field, "must be a number of cubic metres, 0 or more"));
            }
        }
        // Text is matched as given, and control characters are never stored: refused.
        for (field, value) in
            [("truck_id", &self.truck_id), ("load_detail", &self.load_detail), ("quality_flags", &self.quality_flags)]
        {
            if value.as_deref().is_some_and(|v| v.chars().any(char::is_control)) {
                errors.push(invalid(field, "must not contain control characters"));
            }
        }
        let load_details = match &self.load_detail {
            None => None,
            Some(text) => {
                let mut pairs = vec![];
                for pair in text.split(',') {
                    match pair.split_once(':') {
                        Some((list, code)) if !list.trim().is_empty() && !code.trim().is_empty() => {
                            pairs.push(serde_json::json!({"list": list.trim(), "code": code.trim()}));
                        }
                        _ => {
                            errors.push(invalid("load_detail", "must be `list:code` pairs separated by commas"));
                            break;
                        }
                    }
                }
                Some(serde_json::Value::Array(pairs))
            }
        };
        let quality_flags = self.quality_flags.as_ref().map(|text| {
            let flags: Vec<String> = text.split(',').map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
            if flags.is_empty() {
                errors.push(invalid("quality_flags", "must name at least one flag"));
            }
            flags
        });
        if self.truck_id.as_ref().is_some_and(|t| t.is_empty() || t.chars().count() > 64) {
            errors.push(invalid("truck_id", "must be 1–64 characters"));
        }
        if !errors.is_empty() {
            return Err(Error::InvalidRequest { detail: "invalid measurement filter".into(), errors });
        }
        Ok(Conditions { workgroup_id, filter: self, load_details, quality_flags })
    }
}

impl Conditions {
    /// Appends ` WHERE …` for these conditions (the table is `measurements`).
    pub fn push_where(&self, sql: &mut QueryBuilder<Postgres>) {
        let f = &self.filter;
        sql.push(" WHERE workgroup_id = ").push_bind(self.workgroup_id);
        if let Some(site_id) = f.site_id {
            sql.push(" AND site_id = ").push_bind(site_id);
        }
        if let Some(device_id) = f.device_id {
            sql.push(" AND device_id = ").push_bind(device_id);
        }
        if let Some(from) = f.from {
            sql.push(" AND scanned_at >= ").push_bind(from);
        }
        if let Some(to) = f.to {
            sql.push(" AND scanned_at < ").push_bind(to);
        }
        if let Some(truck_id) = &f.truck_id {
            sql.push(" AND truck_id = ").push_bind(truck_id);
        }
        if let Some(reference_scan_id) = f.reference_scan_id {
            sql.push(" AND reference_scan_id = ").push_bind(reference_scan_id);
        }
        if let Some(details) = &self.load_details {
            sql.push(" AND load_details @> ").push_bind(details);
        }
        if let Some(min) = f.min_volume_m3 {
            sql.push(" AND volume_m3 >= ").push_bind(min);
        }
        if let Some(max) = f.max_volume_m3 {
            sql.push(" AND volume_m3 <= ").push_bind(max);
        }
        if let Some(flags) = &self.quality_flags {
            sql.push(" AND quality_flags @> ").push_bind(flags);
        }
    }
}
