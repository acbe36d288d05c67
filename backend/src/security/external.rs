//! The external scan: a TCP connect scan of a device's public address, telling open,
//! closed and filtered ports apart, with adaptive timeouts and concurrency, a per-target
//! rate cap, and a judgement of whether an intrusion detection system (IDS) is distorting
//! the picture. Only targets inside the configured allow-list are ever contacted.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

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

enum Probe {
    Open { rtt: Duration, banner: Option<String>, reset_at_once: bool },
    Closed { rtt: Duration },
    Filtered,
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

/// A guess at the service from well-known port numbers.
fn service_guess(port: u16, banner: Option<&str>) -> Option<String> {
    if let Some(banner) = banner {
        let lower = banner.to_ascii_lowercase();
        for (needle, name) in [("ssh-", "ssh"), ("http/", "http"), ("smtp", "smtp"), ("ftp", "ftp"), ("rfb ", "vnc")] {
            if lower.starts_with(needle) || lower.contains(needle) {
                return Some(name.to_owned());
            }
        }
    }
    let name = match port {
        21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "dns",
        80 | 8080 => "http",
        110 => "pop3",
        143 => "imap",
        443 | 8443 => "https",
        445 => "smb",
        1433 => "mssql",
        1521 => "oracle",
        3306 => "mysql",
        3389 => "rdp",
        5432 => "postgresql",
        5672 => "amqp",
        5900 => "vnc",
        _ => return None,
    };
    Some(name.to_owned())
}

async fn probe(address: SocketAddr, timeout: Duration) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
        // Connecting to a loopback port in the ephemeral range can meet itself (the kernel
        // picks the same port as the source): that is no listener, the port is closed.
        Ok(Ok(stream)) if stream.local_addr().ok() == Some(address) => Probe::Closed { rtt: started.elapsed() },
        Ok(Ok(mut stream)) => {
            let rtt = started.elapsed();
            // A service may greet first (SSH, SMTP, FTP, VNC); many wait for the client.
            let mut buffer = [0u8; 128];
            let read_started = Instant::now();
            let (banner, reset_at_once) =
                match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => {
                        let text: String =
                            String::from_utf8_lossy(&buffer[..n]).chars().filter(|c| !c.is_control()).collect();
                        (Some(text.trim().to_owned()).filter(|t| !t.is_empty()), false)
                    }
                    // Reset straight after the handshake: what some IDSs do to every port
                    // they pretend is open. A clean close (FIN) is an ordinary service
                    // turning away a client that said nothing, and does not count.
                    Ok(Err(error)) if error.kind() == ErrorKind::ConnectionReset => {
                        (None, read_started.elapsed() < Duration::from_millis(100))
                    }
                    Ok(Ok(_)) | Ok(Err(_)) => (None, false),
                    Err(_) => (None, false),
                };
            Probe::Open { rtt, banner, reset_at_once }
        }
        Ok(Err(error)) if error.kind() == ErrorKind::ConnectionRefused => Probe::Closed { rtt: started.elapsed() },
        // The handshake completed and the peer reset before the connect was reported: open,
        // and reset at once.
        Ok(Err(error)) if error.kind() == ErrorKind::ConnectionReset => {
            Probe::Open { rtt: started.elapsed(), banner: None, reset_at_once: true }
        }
        _ => Probe::Filtered,
    }
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
    // Canaries: random high ports beyond the set asked for, almost never legitimately open.
    let asked: HashSet<u16> = settings.ports.iter().copied().collect();
    let canaries: HashSet<u16> = {
        let mut rng = rand::rng();
        (0..64).map(|_| rng.random_range(40000..=65535u16)).filter(|p| !asked.contains(p)).take(6).collect()
    };
    let mut queue: Vec<(u16, bool)> = settings.ports.iter().map(|p| (*p, false)).collect();
    queue.extend(canaries.iter().map(|p| (*p, true)));
    let total = queue.len();

    let mut outcome = ScanOutcome::default();
    let mut in_flight = JoinSet::new();
    let mut window = 64.0f64.min(settings.max_in_flight as f64);
    let (mut srtt, mut rttvar): (Option<f64>, f64) = (None, 0.0);
    let mut timeout = settings.initial_timeout;
    // The rate cap as a budget: probes may go out in small bursts, and the scanner sleeps
    // only when it is a few milliseconds ahead (timers are too coarse for one sleep a probe).
    let rate = f64::from(settings.rate_per_sec.max(1));
    let rate_start = Instant::now();
    let mut sent = 0f64;
    let mut rtts: Vec<f64> = Vec::new();
    let (mut canaries_open, mut resets, mut done) = (0usize, 0usize, 0usize);
    let mut next = queue.into_iter();
    let mut exhausted = false;

    loop {
        while !exhausted && (in_flight.len() as f64) < window.floor().max(1.0) {
            let Some((port, canary)) = next.next() else {
                exhausted = true;
                break;
            };
            // The per-target rate cap.
            let ahead = sent / rate - rate_start.elapsed().as_secs_f64();
            if ahead > 0.005 {
                tokio::time::sleep(Duration::from_secs_f64(ahead)).await;
            }
            sent += 1.0;
            let probe_timeout = timeout;
            in_flight.spawn(async move { (port, canary, probe(SocketAddr::new(target, port), probe_timeout).await) });
        }
        let Some(finished) = in_flight.join_next().await else { break };
        let (port, canary, result) = finished.map_err(|e| format!("probe task failed: {e}"))?;
        done += 1;
        if done % 2048 == 0 {
            progress(done as f32 / total as f32);
        }
        let rtt = match &result {
            Probe::Open { rtt, .. } | Probe::Closed { rtt } => Some(rtt.as_secs_f64()),
            Probe::Filtered => None,
        };
        match rtt {
            // RFC 6298's estimator: the timeout follows the target's round trips.
            Some(sample) => {
                rtts.push(sample);
                let (s, v) = match srtt {
                    None => (sample, sample / 2.0),
                    Some(s) => (0.875 * s + 0.125 * sample, 0.75 * rttvar + 0.25 * (s - sample).abs()),
                };
                srtt = Some(s);
                rttvar = v;
                timeout = Duration::from_secs_f64(s + 4.0 * v).clamp(settings.min_timeout, settings.max_timeout);
                // Grow quickly while every probe is answered; halve when one is not.
                window = (window + 1.0).min(settings.max_in_flight as f64);
            }
            // A probe that got no answer: the target or the path may be overloaded.
            None => window = (window / 2.0).max(8.0),
        }
        match result {
            Probe::Open { banner, reset_at_once, .. } => {
                if canary {
                    canaries_open += 1;
                    continue;
                }
                resets += usize::from(reset_at_once);
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

    // Is the picture plausible?
    let scanned = outcome.open.len() + outcome.closed + outcome.filtered;
    let open = outcome.open.len();
    if open >= 50 && open * 5 > scanned {
        outcome.ids_reasons.push(format!("{open} of {scanned} ports answer as open"));
    }
    if canaries_open >= 2 {
        outcome.ids_reasons.push(format!("{canaries_open} of {} random canary ports answer as open", canaries.len()));
    }
    if open >= 10 && resets * 2 >= open {
        outcome
            .ids_reasons
            .push(format!("{resets} of {open} open ports reset the connection right after the handshake"));
    }
    if rtts.len() >= 200 {
        let tenth = rtts.len() / 10;
        let median = |xs: &mut [f64]| {
            xs.sort_by(f64::total_cmp);
            xs[xs.len() / 2]
        };
        let early = median(&mut rtts[..tenth].to_vec());
        let late = median(&mut rtts[rtts.len() - tenth..].to_vec());
        if late > 0.05 && late > 5.0 * early {
            outcome.ids_reasons.push(format!(
                "round trips grew from {:.1} ms to {:.1} ms during the scan",
                early * 1e3,
                late * 1e3
            ));
        }
    }
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

    fn settings(ports: Vec<u16>) -> ScanSettings {
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
