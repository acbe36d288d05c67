//! 3D load profiles: the height of the load surface over a regular grid.
//!
//! Binary form ("u16-mm-le"): `rows × cols` heights, row-major, each an unsigned 16-bit
//! little-endian count of millimetres above the truck's reference (0–65.535 m); 0 where
//! nothing was measured. Two bytes a cell, a third of what the same numbers take as JSON.
//! On the wire the bytes travel base64-encoded inside the JSON message; at rest they are
//! stored as they are.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

pub const ENCODING: &str = "u16-mm-le";
pub const MAX_CELLS: usize = 512 * 512;
pub const MAX_SIDE: u16 = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadProfile {
    pub rows: u16,
    pub cols: u16,
    /// Grid spacing in millimetres.
    pub cell_size_mm: u16,
    /// Always `u16-mm-le` in schema version 1.
    pub encoding: String,
    /// The heights in the binary form, base64 (standard alphabet, padded).
    pub heights: String,
}

impl LoadProfile {
    pub fn from_heights_mm(rows: u16, cols: u16, cell_size_mm: u16, heights: &[u16]) -> Self {
        assert_eq!(heights.len(), usize::from(rows) * usize::from(cols), "heights must fill the grid");
        let bytes: Vec<u8> = heights.iter().flat_map(|h| h.to_le_bytes()).collect();
        LoadProfile { rows, cols, cell_size_mm, encoding: ENCODING.to_owned(), heights: STANDARD.encode(bytes) }
    }

    /// The binary heights, checked against the grid's dimensions.
    pub fn decode(&self) -> Result<Vec<u8>, String> {
        if self.encoding != ENCODING {
            return Err(format!("profile encoding `{}` is not `{ENCODING}`", self.encoding));
        }
        if self.rows == 0 || self.cols == 0 || self.rows > MAX_SIDE || self.cols > MAX_SIDE {
            return Err(format!("profile dimensions {}×{} out of range 1–{MAX_SIDE}", self.rows, self.cols));
        }
        let cells = usize::from(self.rows) * usize::from(self.cols);
        if cells > MAX_CELLS {
            return Err(format!("profile has {cells} cells, more than {MAX_CELLS}"));
        }
        if self.cell_size_mm == 0 {
            return Err("profile cell_size_mm must be positive".to_owned());
        }
        let bytes = STANDARD.decode(&self.heights).map_err(|e| format!("profile heights are not base64: {e}"))?;
        if bytes.len() != cells * 2 {
            return Err(format!(
                "profile heights hold {} bytes, {}×{} cells need {}",
                bytes.len(),
                self.rows,
                self.cols,
                cells * 2
            ));
        }
        Ok(bytes)
    }
}

/// Heights in millimetres from the binary form.
pub fn heights_mm(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks_exact(2).map(|pair| u16::from_le_bytes([pair[0], pair[1]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_dimensions() {
        let heights: Vec<u16> = (0..12).map(|i| i * 100).collect();
        let profile = LoadProfile::from_heights_mm(3, 4, 250, &heights);
        assert_eq!(heights_mm(&profile.decode().unwrap()), heights);
        let wrong = LoadProfile { rows: 4, ..profile.clone() };
        assert!(wrong.decode().unwrap_err().contains("need 32"));
        let zero = LoadProfile { cols: 0, ..profile };
        assert!(zero.decode().is_err());
    }
}
