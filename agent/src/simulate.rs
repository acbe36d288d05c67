//! Realistic measurements for simulated scanners: the trucks of a site's fleet, plausible
//! fill levels, MPS payload and carry-back, load details picked from the site's lists,
//! occasional quality flags, and a 3D load profile shaped like a heaped load.
//!
//! Every device of a site derives the same fleet and lists from the site id, as scanners
//! sharing a site's reference scans would. (The synchronised store of reference scans and
//! lists replaces these built-in ones once sync exists.)

use chrono::{DateTime, Utc};
use myscanner_protocol::{LoadDetail, LoadProfile, MeasurementV1, Truck};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// A truck model: heaped capacity (m³), tray length and width (m).
struct Model {
    name: &'static str,
    capacity_m3: f64,
    length_m: f64,
    width_m: f64,
}

const ROAD_TRUCKS: [Model; 4] = [
    Model { name: "Kenworth T909 tipper", capacity_m3: 18.0, length_m: 4.8, width_m: 2.4 },
    Model { name: "Mack Granite tipper", capacity_m3: 12.0, length_m: 4.2, width_m: 2.3 },
    Model { name: "Volvo A40G", capacity_m3: 24.0, length_m: 5.5, width_m: 3.3 },
    Model { name: "Bell B45E", capacity_m3: 28.0, length_m: 5.9, width_m: 3.4 },
];
const HAUL_TRUCKS: [Model; 3] = [
    Model { name: "CAT 777G", capacity_m3: 60.0, length_m: 7.0, width_m: 5.5 },
    Model { name: "CAT 785D", capacity_m3: 78.0, length_m: 7.6, width_m: 6.1 },
    Model { name: "Komatsu HD785-7", capacity_m3: 60.0, length_m: 7.1, width_m: 5.4 },
];

const LISTS: [(&str, &[(&str, &str)]); 3] = [
    (
        "material",
        &[
            ("GRAVEL20", "Gravel 20 mm"),
            ("SAND", "Washed sand"),
            ("ROCK", "Crushed rock"),
            ("TOPSOIL", "Topsoil"),
            ("ORE", "Iron ore"),
        ],
    ),
    (
        "destination",
        &[
            ("STOCKPILE-A", "Stockpile A"),
            ("STOCKPILE-B", "Stockpile B"),
            ("CRUSHER", "Primary crusher"),
            ("WASTE", "Waste dump"),
        ],
    ),
    (
        "customer",
        &[("ACME", "Acme Civil"), ("BUILDCO", "BuildCo"), ("COUNCIL", "Shire council"), ("CASH", "Cash sale")],
    ),
];

struct FleetTruck {
    truck_id: String,
    reference_scan_id: Uuid,
    model: &'static Model,
}

pub struct MeasurementFactory {
    device_id: Uuid,
    is_mps: bool,
    fleet: Vec<FleetTruck>,
    rng: StdRng,
}

impl MeasurementFactory {
    pub fn new(device_id: Uuid, site_id: Uuid, is_mps: bool) -> Self {
        let mut site = StdRng::seed_from_u64(u64::from_le_bytes(site_id.as_bytes()[8..].try_into().unwrap()));
        let models: &'static [Model] = if is_mps { &HAUL_TRUCKS } else { &ROAD_TRUCKS };
        let fleet = (1..=8)
            .map(|n| FleetTruck {
                truck_id: format!("T{n:02}"),
                reference_scan_id: Uuid::from_u128(site.random()),
                model: &models[site.random_range(0..models.len())],
            })
            .collect();
        MeasurementFactory { device_id, is_mps, fleet, rng: StdRng::from_os_rng() }
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        // Box–Muller.
        let (u1, u2): (f64, f64) = (self.rng.random::<f64>().max(f64::MIN_POSITIVE), self.rng.random());
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn next(&mut self, scanned_at: DateTime<Utc>) -> MeasurementV1 {
        let truck = &self.fleet[self.rng.random_range(0..self.fleet.len())];
        let (model, truck_id, reference_scan_id) = (truck.model, truck.truck_id.clone(), truck.reference_scan_id);
        let fill = self.normal(0.85, 0.1).clamp(0.3, 1.15);
        let volume_m3 = (model.capacity_m3 * fill * 100.0).round() / 100.0;
        let (payload_t, carry_back_m3) = if self.is_mps {
            let density = self.normal(1.9, 0.15).clamp(1.4, 2.6);
            (
                Some((volume_m3 * density * 10.0).round() / 10.0),
                Some((self.normal(0.3, 0.3).abs() * 100.0).round() / 100.0),
            )
        } else {
            (None, None)
        };
        let lists = if self.is_mps { &LISTS[..2] } else { &LISTS[..] };
        let load_details = lists
            .iter()
            .map(|(list, items)| {
                let (code, label) = items[self.rng.random_range(0..items.len())];
                LoadDetail { list: (*list).to_owned(), code: code.to_owned(), label: Some(label.to_owned()) }
            })
            .collect();
        let mut quality_flags = vec![];
        for (flag, chance) in [("low_point_density", 0.03), ("truck_moving", 0.01), ("partial_tray_coverage", 0.005)] {
            if self.rng.random::<f64>() < chance {
                quality_flags.push(flag.to_owned());
            }
        }
        let profile = self.profile(model, volume_m3);
        MeasurementV1 {
            schema_version: myscanner_protocol::measurement::SCHEMA_VERSION,
            measurement_id: Uuid::now_v7(),
            device_id: self.device_id,
            scanned_at,
            truck: Truck { reference_scan_id: Some(reference_scan_id), truck_id, name: Some(model.name.to_owned()) },
            volume_m3,
            payload_t,
            carry_back_m3,
            load_details,
            quality_flags,
            profile: Some(profile),
        }
    }

    /// A heaped load over the tray whose heights integrate to the measured volume.
    fn profile(&mut self, model: &Model, volume_m3: f64) -> LoadProfile {
        let cell_m = if model.length_m > 6.5 { 0.2 } else { 0.1 };
        let rows = (model.length_m / cell_m).round() as u16;
        let cols = (model.width_m / cell_m).round() as u16;
        let peak_row = self.normal(0.0, 0.15);
        let mut shape = Vec::with_capacity(usize::from(rows) * usize::from(cols));
        for r in 0..rows {
            for c in 0..cols {
                let u = (f64::from(r) + 0.5) / f64::from(rows) * 2.0 - 1.0 - peak_row;
                let v = (f64::from(c) + 0.5) / f64::from(cols) * 2.0 - 1.0;
                let mound = (1.0 - 0.8 * u * u - v * v).max(0.0).powf(0.6);
                shape.push(mound * (1.0 + self.normal(0.0, 0.03)).max(0.0));
            }
        }
        let total: f64 = shape.iter().sum::<f64>() * cell_m * cell_m;
        let scale = if total > 0.0 { volume_m3 / total } else { 0.0 };
        let heights: Vec<u16> = shape.iter().map(|s| (s * scale * 1000.0).round().clamp(0.0, 65535.0) as u16).collect();
        LoadProfile::from_heights_mm(rows, cols, (cell_m * 1000.0) as u16, &heights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_are_plausible_and_profiles_match_volume() {
        for is_mps in [false, true] {
            let mut factory = MeasurementFactory::new(Uuid::now_v7(), Uuid::now_v7(), is_mps);
            for _ in 0..50 {
                let m = factory.next(Utc::now());
                assert!(m.volume_m3 > 0.0 && m.volume_m3 < 100.0);
                assert_eq!(m.payload_t.is_some(), is_mps);
                let profile = m.profile.unwrap();
                let cells = usize::from(profile.rows) * usize::from(profile.cols);
                assert!((300..=5000).contains(&cells), "{cells} cells");
                let heights = myscanner_protocol::profile::heights_mm(&profile.decode().unwrap());
                let cell = f64::from(profile.cell_size_mm) / 1000.0;
                let volume: f64 = heights.iter().map(|h| f64::from(*h) / 1000.0 * cell * cell).sum();
                assert!((volume - m.volume_m3).abs() / m.volume_m3 < 0.02, "{volume} vs {}", m.volume_m3);
            }
        }
    }
}
