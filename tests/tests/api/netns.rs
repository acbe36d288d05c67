//! The internal scan against a real network: namespaces joined by a bridge, the scanner in
//! one, three hosts with known MAC addresses in the others. It must find exactly those.
//! (Network namespaces need root, as CI has; elsewhere the test says it was skipped.)

use std::process::Command;

use myscanner_agent::network_scan::{self, Discovery};
use uuid::Uuid;

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

/// The namespaces of one test, removed again when dropped.
struct Lab {
    names: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.names {
            ip(&["netns", "del", name]);
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `name`.
fn in_namespace<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).expect("the namespace exists");
        // SAFETY: a valid namespace file descriptor; only this thread changes namespace.
        let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread")
}

#[test]
fn the_internal_scan_finds_exactly_the_hosts_on_its_subnet() {
    let id = &Uuid::new_v4().simple().to_string()[..4];
    let lan = format!("ms{id}lan");
    if !ip(&["netns", "add", &lan]) {
        assert!(std::env::var_os("CI").is_none(), "CI must be able to create network namespaces");
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let mut lab = Lab { names: vec![lan.clone()] };
    assert!(ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"]) && ip(&["-n", &lan, "link", "set", "br0", "up"]));
    // The scanner is .1; the hosts .2–.4, in the documentation range, inside these namespaces only.
    for n in 1..=4 {
        let ns = format!("ms{id}h{n}");
        assert!(ip(&["netns", "add", &ns]));
        lab.names.push(ns.clone());
        let (inside, outside) = (format!("v{id}{n}"), format!("p{id}{n}"));
        let mac = format!("02:00:00:aa:00:0{n}");
        let address = format!("192.0.2.{n}/24");
        for args in [
            vec!["link", "add", &inside, "type", "veth", "peer", "name", &outside],
            vec!["link", "set", &inside, "netns", &ns],
            vec!["link", "set", &outside, "netns", &lan],
            vec!["-n", &ns, "link", "set", &inside, "address", &mac, "name", "eth0"],
            vec!["-n", &ns, "addr", "add", &address, "dev", "eth0"],
            vec!["-n", &ns, "link", "set", "eth0", "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &lan, "link", "set", &outside, "master", "br0"],
            vec!["-n", &lan, "link", "set", &outside, "up"],
        ] {
            assert!(ip(&args), "ip {}", args.join(" "));
        }
    }

    // Both ways of finding hosts: raw ARP (the test runs as root, so with CAP_NET_RAW) and
    // the kernel's neighbour table (what a scanner without it uses). The neighbour table is
    // read first, so the raw sweep cannot lean on entries the kernel already has.
    let scanner = format!("ms{id}h1");
    let (by_kernel, by_raw_arp) = in_namespace(&scanner, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let allowed = ["192.0.2.0/24".parse().unwrap()];
        let scan =
            |method| runtime.block_on(network_scan::discover_with(method, 1024, &allowed)).expect("the scan runs");
        let by_kernel = scan(Discovery::KernelNeighbours);
        assert!(ip(&["neigh", "flush", "all"]));
        let by_raw_arp = scan(Discovery::RawArp);
        // A network outside the allow-list is never swept.
        let refused = runtime.block_on(network_scan::discover(1024, &["198.51.100.0/24".parse().unwrap()]));
        assert!(refused.is_err());
        (by_kernel, by_raw_arp)
    });
    let expected: Vec<(String, Option<String>)> =
        (2..=4).map(|n| (format!("192.0.2.{n}"), Some(format!("02:00:00:aa:00:0{n}")))).collect();
    for hosts in [by_kernel, by_raw_arp] {
        let mut found: Vec<(String, Option<String>)> = hosts.into_iter().map(|h| (h.ip.to_string(), h.mac)).collect();
        found.sort();
        assert_eq!(found, expected);
    }
    drop(lab);
}

#[test]
fn vendors_come_from_the_ieee_registry() {
    // deploy/scripts/test.sh installs Debian's ieee-data.
    assert_eq!(network_scan::vendor("00:1b:21:3a:4f:5e").as_deref(), Some("Intel Corporate"));
    assert_eq!(network_scan::vendor("02:00:00:aa:00:01"), None, "locally administered addresses have no vendor");
}
