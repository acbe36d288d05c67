//! The internal scan as a scanner runs it: find the hosts on its local IPv4 subnets with
//! their MAC addresses and a description (vendor from the IEEE OUI registry, reverse-DNS
//! name).
//!
//! With CAP_NET_RAW the agent sweeps each subnet with ARP requests of its own over a raw
//! packet socket (`arp`). Without it the kernel does the ARP work: a UDP datagram to each
//! address of a subnet makes the kernel resolve it, and the neighbour table then lists who
//! answered.
//! Subnets larger than `max_hosts` are skipped rather than swept, and only subnets inside
//! the configured allow-list are touched at all: nothing is ever sent elsewhere.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Debian's copy of the IEEE registry (package `ieee-data`).
const OUI_REGISTRY: &str = "/usr/share/ieee-data/oui.txt";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub ip: IpAddr,
    pub mac: Option<String>,
    pub description: Option<String>,
}

/// A local IPv4 subnet: its interface and the scanner's own address in it.
#[derive(Debug, Clone)]
pub struct Subnet {
    pub net: Ipv4Net,
    pub own: Ipv4Addr,
    pub interface: String,
}

/// The IPv4 subnets of this network namespace's interfaces (loopback excluded).
pub fn local_subnets() -> std::io::Result<Vec<Subnet>> {
    let output = std::process::Command::new("ip").args(["-o", "-4", "addr", "show"]).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut subnets = vec![];
    for line in text.lines() {
        // "2: eth0    inet 192.0.2.5/24 brd 192.0.2.255 scope global eth0"
        let mut words = line.split_whitespace();
        let Some(interface) = words.nth(1).map(|w| w.split('@').next().unwrap_or(w).to_owned()) else { continue };
        let Some(_) = words.find(|w| *w == "inet") else { continue };
        let Some(Ok(net)) = words.next().map(str::parse::<Ipv4Net>) else { continue };
        if !net.addr().is_loopback() {
            subnets.push(Subnet { net: net.trunc(), own: net.addr(), interface });
        }
    }
    Ok(subnets)
}

/// How hosts are found on a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Raw ARP when permitted (CAP_NET_RAW), else the kernel's neighbour table.
    Auto,
    /// Raw ARP only: an error without CAP_NET_RAW.
    RawArp,
    /// The kernel's neighbour table only.
    KernelNeighbours,
}

/// The kernel's neighbour table: complete entries only.
fn neighbours() -> HashMap<Ipv4Addr, String> {
    // thread-self: a thread that entered another network namespace reads that one's table.
    let table = std::fs::read_to_string("/proc/thread-self/net/arp")
        .or_else(|_| std::fs::read_to_string("/proc/net/arp"))
        .unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ip, flags, mac) = (fields.first()?, fields.get(2)?, fields.get(3)?);
            let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()? & 0x2 != 0;
            (complete && *mac != "00:00:00:00:00:00").then(|| Some((ip.parse().ok()?, mac.to_lowercase())))?
        })
        .collect()
}

fn oui_registry() -> &'static HashMap<String, String> {
    static REGISTRY: OnceLock<HashMap<String, String>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let text = std::fs::read_to_string(OUI_REGISTRY).unwrap_or_default();
        // "00-1B-21   (hex)\t\tIntel Corporate"
        text.lines()
            .filter_map(|line| {
                let (prefix, vendor) = line.split_once("(hex)")?;
                Some((prefix.trim().replace('-', ":").to_lowercase(), vendor.trim().to_owned()))
            })
            .collect()
    })
}

/// The vendor a MAC address was assigned to, from the IEEE OUI registry.
pub fn vendor(mac: &str) -> Option<String> {
    oui_registry().get(mac.get(..8)?).cloned()
}

/// The reverse-DNS name of an address, if it has one.
fn reverse_dns(ip: Ipv4Addr) -> Option<String> {
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let mut host = [0 as libc::c_char; 256];
    // SAFETY: the address and buffer are valid for the lengths given.
    let status = unsafe {
        libc::getnameinfo(
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if status != 0 {
        return None;
    }
    // SAFETY: getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) }.to_string_lossy().into_owned();
    Some(name).filter(|n| !n.is_empty())
}

/// Finds the hosts on the local subnets that lie inside `allowed` and have at most
/// `max_hosts` addresses.
pub async fn discover(max_hosts: u32, allowed: &[Ipv4Net]) -> std::io::Result<Vec<Host>> {
    discover_with(Discovery::Auto, max_hosts, allowed).await
}

pub async fn discover_with(method: Discovery, max_hosts: u32, allowed: &[Ipv4Net]) -> std::io::Result<Vec<Host>> {
    let subnets: Vec<Subnet> = local_subnets()?
        .into_iter()
        .filter(|s| s.net.prefix_len() >= 31 || (1u64 << (32 - s.net.prefix_len())) <= u64::from(max_hosts))
        .filter(|s| allowed.iter().any(|a| a.contains(&s.net)))
        .collect();
    if subnets.is_empty() {
        return Err(std::io::Error::other("no local subnet lies inside the scan allow-list"));
    }
    let mut table = HashMap::new();
    let mut by_kernel = vec![];
    for subnet in &subnets {
        if method == Discovery::KernelNeighbours {
            by_kernel.push(subnet.clone());
            continue;
        }
        let targets: Vec<Ipv4Addr> = subnet.net.hosts().filter(|ip| *ip != subnet.own).collect();
        let (interface, own) = (subnet.interface.clone(), subnet.own);
        let swept = tokio::task::spawn_blocking(move || {
            crate::arp::sweep(&interface, own, &targets, Duration::from_millis(700))
        })
        .await
        .map_err(std::io::Error::other)?;
        match swept {
            Ok(found) => table.extend(found),
            Err(error) if method == Discovery::Auto && error.kind() == std::io::ErrorKind::PermissionDenied => {
                by_kernel.push(subnet.clone());
            }
            Err(error) => return Err(error),
        }
    }
    if !by_kernel.is_empty() {
        table.extend(kernel_sweep(&by_kernel).await?);
    }
    let mut found = vec![];
    for Subnet { net, own, .. } in &subnets {
        for ip in net.hosts().filter(|ip| ip != own) {
            if let Some(mac) = table.get(&ip) {
                let name = tokio::task::spawn_blocking(move || reverse_dns(ip)).await.ok().flatten();
                let description = match (vendor(mac), name) {
                    (Some(v), Some(n)) => Some(format!("{v} ({n})")),
                    (v, n) => v.or(n),
                };
                found.push(Host { ip: IpAddr::V4(ip), mac: Some(mac.clone()), description });
            }
        }
    }
    Ok(found)
}

/// Without raw sockets: makes the kernel resolve every address, then reads its table.
async fn kernel_sweep(subnets: &[Subnet]) -> std::io::Result<HashMap<Ipv4Addr, String>> {
    let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
    // Two rounds: the kernel gives up on an address after a few ARP requests.
    for _ in 0..2 {
        for Subnet { net, own, .. } in subnets {
            for ip in net.hosts().filter(|ip| ip != own) {
                // The discard port: nothing needs to answer; the ARP resolution is the point.
                let _ = socket.send_to(&[0], SocketAddr::from((ip, 9))).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    Ok(neighbours())
}
