//! The external scan: a TCP connect scan of a device's public address, telling open,
//! closed and filtered ports apart, with adaptive timeouts and concurrency, a per-target
//! rate cap, and a judgement of whether an intrusion detection system (IDS) is distorting
//! the picture. Only targets inside the configured allow-list are ever contacted.
//!
//! [`scan`] runs the loop; one probe and what it tells are in `probe`, how fast the scan
//! may go in `pacing`, and the IDS judgement — pure, so tests call it — in `ids`.

mod ids;
mod pacing;
mod probe;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use rand::Rng;
use tokio::task::JoinSet;

use self::ids::{Evidence, ids_reasons};
use self::pacing::{RateCap, RttEstimator, Window};
use self::probe::{Probe, probe, service_guess};
use super::queue::PortFinding;

#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub ports: Vec<u16>,
    /// Probes in flight at most (the window adapts below it).
    pub max_in_flight: usize,
    /// Connection attempts per second to one target, at most.
    pub rate_per_sec: u32,
    pub initial_timeout: Duration,
    pub min_timeout: Duration,
    pub max_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct ScanOutcome {
    pub open: Vec<PortFinding>,
    pub closed: usize,
    pub filtered: usize,
    pub ids_suspected: bool,
    pub ids_reasons: Vec<String>,
}

/// Whether the scanner may contact `target` at all. An IPv4-mapped IPv6 address
/// (`::ffff:192.0.2.1`) is judged as the IPv4 address it reaches.
pub fn allowed(target: IpAddr, allow: &[IpNet]) -> bool {
    let target = target.to_canonical();
    allow.iter().any(|net| net.contains(&target))
}

/// Parses a port set such as `1-1024,3389,8000-8100`.
pub fn parse_ports(spec: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port `{s}`"));
        let (from, to) = (parse(from)?, parse(to)?);
        if from > to {
            return Err(format!("bad port range `{part}`"));
        }
        ports.extend(from..=to);
    }
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        return Err("no ports".into());
    }
    Ok(ports)
}

/// Canaries: random high ports beyond the set asked for, almost never legitimately open.
fn canaries(asked: &[u16]) -> HashSet<u16> {
    let asked: HashSet<u16> = asked.iter().copied().collect();
    let mut rng = rand::rng();
    (0..64).map(|_| rng.random_range(40000..=65535u16)).filter(|p| !asked.contains(p)).take(6).collect()
}

/// Scans `target`. `progress` receives the fraction done now and then.
pub async fn scan(
    target: IpAddr,
    settings: &ScanSettings,
    allow: &[IpNet],
    mut progress: impl FnMut(f32),
) -> Result<ScanOutcome, String> {
    // The address judged is the address scanned.
    let target = target.to_canonical();
    if !allowed(target, allow) {
        return Err(format!("target {target} is outside the scanner's allow-list"));
    }
    let canaries = canaries(&settings.ports);
    let mut queue: Vec<(u16, bool)> = settings.ports.iter().map(|p| (*p, false)).collect();
    queue.extend(canaries.iter().map(|p| (*p, true)));
    let total = queue.len();

    let mut outcome = ScanOutcome::default();
    let mut evidence = Evidence { canaries: canaries.len(), ..Evidence::default() };
    let mut in_flight = JoinSet::new();
    let mut window = Window::new(settings.max_in_flight);
    let mut estimator = RttEstimator::new(settings);
    let mut rate_cap = RateCap::new(settings.rate_per_sec);
    let mut done = 0usize;
    let mut next = queue.into_iter();
    let mut exhausted = false;

    loop {
        while !exhausted && window.has_room(in_flight.len()) {
            let Some((port, canary)) = next.next() else {
                exhausted = true;
                break;
            };
            rate_cap.next_probe().await;
            let timeout = estimator.timeout();
            in_flight.spawn(async move { (port, canary, probe(SocketAddr::new(target, port), timeout).await) });
        }
        let Some(finished) = in_flight.join_next().await else { break };
        let (port, canary, result) = finished.map_err(|e| format!("probe task failed: {e}"))?;
        done += 1;
        if done.is_multiple_of(2048) {
            progress(done as f32 / total as f32);
        }
        match result.rtt() {
            Some(sample) => {
                evidence.rtts.push(sample);
                estimator.observe(sample);
                window.answered();
            }
            None => window.unanswered(),
        }
        match result {
            Probe::Open { .. } if canary => evidence.canaries_open += 1,
            Probe::Open { banner, reset_at_once, .. } => {
                evidence.resets += usize::from(reset_at_once);
                let service = service_guess(port, banner.as_deref());
                outcome.open.push(PortFinding { port, protocol: "tcp".into(), state: "open".into(), service, banner });
            }
            Probe::Closed { .. } if !canary => outcome.closed += 1,
            Probe::Filtered if !canary => outcome.filtered += 1,
            _ => {}
        }
    }
    progress(1.0);
    outcome.open.sort_by_key(|p| p.port);
    outcome.ids_reasons = ids_reasons(&outcome, &evidence);
    outcome.ids_suspected = !outcome.ids_reasons.is_empty();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_sets_parse() {
        assert_eq!(parse_ports("22,80-82, 80").unwrap(), [22, 80, 81, 82]);
        assert_eq!(parse_ports("1-65535").unwrap().len(), 65535);
        assert!(parse_ports("0-10").is_err() && parse_ports("9-3").is_err() && parse_ports("").is_err());
    }

    #[test]
    fn only_allowed_targets() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &allow));
        assert!(!allowed("203.0.113.5".parse().unwrap(), &allow));
        // Mapped addresses are judged as what they reach, either way.
        assert!(allowed("::ffff:127.0.0.1".parse().unwrap(), &allow));
        assert!(!allowed("::ffff:203.0.113.5".parse().unwrap(), &["::ffff:0:0/96".parse().unwrap()]));
    }

    pub(super) fn settings(ports: Vec<u16>) -> ScanSettings {
        ScanSettings {
            ports,
            max_in_flight: 64,
            rate_per_sec: 5000,
            initial_timeout: Duration::from_millis(500),
            min_timeout: Duration::from_millis(20),
            max_timeout: Duration::from_millis(2000),
        }
    }

    /// Listeners on loopback that take each connection and then close it cleanly, or
    /// reset it (SO_LINGER 0).
    async fn listeners(count: usize, reset: bool) -> (Vec<u16>, tokio::task::JoinSet<()>) {
        let mut tasks = tokio::task::JoinSet::new();
        let mut ports = vec![];
        for _ in 0..count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(listener.local_addr().unwrap().port());
            tasks.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    if reset {
                        stream.set_zero_linger().unwrap();
                    }
                    drop(stream);
                }
            });
        }
        (ports, tasks)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_real_resets_count_towards_an_ids() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        let target = "127.0.0.1".parse().unwrap();
        // Services that close at once (FIN), as benign ones do: never an IDS, every time.
        let (ports, _closing) = listeners(26, false).await;
        for _ in 0..3 {
            let outcome = scan(target, &settings(ports.clone()), &allow, |_| {}).await.unwrap();
            assert_eq!(outcome.open.len(), 26);
            assert!(!outcome.ids_suspected, "{:?}", outcome.ids_reasons);
        }
        // Ports that reset right after the handshake: flagged.
        let (ports, _resetting) = listeners(26, true).await;
        let outcome = scan(target, &settings(ports), &allow, |_| {}).await.unwrap();
        let flagged = outcome.ids_reasons.iter().any(|r| r.contains("reset the connection"));
        assert!(
            flagged,
            "{:?}: {} open, {} closed, {} filtered",
            outcome.ids_reasons,
            outcome.open.len(),
            outcome.closed,
            outcome.filtered
        );
    }
}
