//! Whether an intrusion detection system (IDS) seems to distort what the scan saw. A pure
//! judgement of what the scan gathered, so tests can call it with any picture.

use super::ScanOutcome;

/// What the scan saw beyond the ports asked for: what the IDS judgement weighs.
#[derive(Debug, Default)]
pub(super) struct Evidence {
    /// Canary ports probed.
    pub(super) canaries: usize,
    /// Canaries that answered as open.
    pub(super) canaries_open: usize,
    /// Open ports (canaries aside) that reset the connection right after the handshake.
    pub(super) resets: usize,
    /// Round trips of the answered probes, in seconds, in the order they came back.
    pub(super) rtts: Vec<f64>,
}

/// Whether the picture is plausible: why an intrusion detection system seems to distort
/// it (nothing when it does not). An IDS may answer every port as open, canaries
/// included, reset what it pretends is open, or slow down as it notices the scan.
pub(super) fn ids_reasons(outcome: &ScanOutcome, evidence: &Evidence) -> Vec<String> {
    let mut reasons = Vec::new();
    let scanned = outcome.open.len() + outcome.closed + outcome.filtered;
    let open = outcome.open.len();
    if open >= 50 && open * 5 > scanned {
        reasons.push(format!("{open} of {scanned} ports answer as open"));
    }
    let canaries_open = evidence.canaries_open;
    if canaries_open >= 2 {
        reasons.push(format!("{canaries_open} of {} random canary ports answer as open", evidence.canaries));
    }
    let resets = evidence.resets;
    if open >= 10 && resets * 2 >= open {
        reasons.push(format!("{resets} of {open} open ports reset the connection right after the handshake"));
    }
    let rtts = &evidence.rtts;
    if rtts.len() >= 200 {
        let tenth = rtts.len() / 10;
        let median = |xs: &[f64]| {
            let mut xs = xs.to_vec();
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let early = median(&rtts[..tenth]);
        let late = median(&rtts[rtts.len() - tenth..]);
        if late > 0.05 && late > 5.0 * early {
            reasons.push(format!(
                "round trips grew from {:.1} ms to {:.1} ms during the scan",
                early * 1e3,
                late * 1e3
            ));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::queue::PortFinding;

    /// A scan's outcome with `open` ports open (from port 1 on) and the rest counted.
    fn outcome(open: u16, closed: usize, filtered: usize) -> ScanOutcome {
        let open = (1..=open)
            .map(|port| PortFinding { port, protocol: "tcp".into(), state: "open".into(), service: None, banner: None })
            .collect();
        ScanOutcome { open, closed, filtered, ..ScanOutcome::default() }
    }

    #[test]
    fn a_plausible_picture_suspects_no_ids() {
        let evidence = Evidence { canaries: 6, canaries_open: 1, resets: 2, rtts: vec![0.002; 1000] };
        assert_eq!(ids_reasons(&outcome(12, 900, 88), &evidence), Vec::<String>::new());
    }

    #[test]
    fn most_ports_open_suggests_an_ids() {
        let reasons = ids_reasons(&outcome(60, 140, 0), &Evidence::default());
        assert_eq!(reasons, ["60 of 200 ports answer as open"]);
        // A few dozen open ports are a busy host, not an IDS.
        assert!(ids_reasons(&outcome(49, 0, 0), &Evidence::default()).is_empty());
        assert!(ids_reasons(&outcome(50, 200, 0), &Evidence::default()).is_empty());
    }

    #[test]
    fn open_canaries_suggest_an_ids() {
        let evidence = Evidence { canaries: 6, canaries_open: 2, ..Evidence::default() };
        assert_eq!(ids_reasons(&outcome(0, 100, 0), &evidence), ["2 of 6 random canary ports answer as open"]);
        let one = Evidence { canaries: 6, canaries_open: 1, ..Evidence::default() };
        assert!(ids_reasons(&outcome(0, 100, 0), &one).is_empty());
    }

    #[test]
    fn resets_after_the_handshake_suggest_an_ids() {
        let evidence = Evidence { resets: 5, ..Evidence::default() };
        assert_eq!(
            ids_reasons(&outcome(10, 100, 0), &evidence),
            ["5 of 10 open ports reset the connection right after the handshake"]
        );
        assert!(ids_reasons(&outcome(11, 100, 0), &evidence).is_empty(), "fewer than half reset");
        let all = Evidence { resets: 9, ..Evidence::default() };
        assert!(ids_reasons(&outcome(9, 100, 0), &all).is_empty(), "too few open ports to judge");
    }

    /// Round trips of `count` answers: the first tenth take `early` seconds, the last
    /// tenth `late`, the rest 10 ms.
    fn rtts(count: usize, early: f64, late: f64) -> Vec<f64> {
        let tenth = count / 10;
        (0..count)
            .map(|i| match i {
                i if i < tenth => early,
                i if i >= count - tenth => late,
                _ => 0.010,
            })
            .collect()
    }

    #[test]
    fn round_trips_growing_during_the_scan_suggest_an_ids() {
        let evidence = Evidence { rtts: rtts(200, 0.002, 0.080), ..Evidence::default() };
        assert_eq!(
            ids_reasons(&outcome(0, 200, 0), &evidence),
            ["round trips grew from 2.0 ms to 80.0 ms during the scan"]
        );
    }

    #[test]
    fn round_trips_grow_suspiciously_only_past_50_ms_and_200_answers() {
        let fast = Evidence { rtts: rtts(200, 0.002, 0.040), ..Evidence::default() };
        assert!(ids_reasons(&outcome(0, 200, 0), &fast).is_empty());
        let few = Evidence { rtts: rtts(199, 0.002, 0.080), ..Evidence::default() };
        assert!(ids_reasons(&outcome(0, 199, 0), &few).is_empty());
    }
}
