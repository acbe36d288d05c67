//! ARP sweeps over a raw packet socket, for a scanner with CAP_NET_RAW: a request to every
//! address of the subnet, straight onto the interface, and every reply read off it. Faster
//! and more complete than waiting on the kernel's neighbour table, which throttles its own
//! ARP requests and forgets failed entries.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ETH_P_ARP: u16 = 0x0806;
const FRAME_LEN: usize = 42; // Ethernet header (14) + ARP for IPv4 over Ethernet (28)

/// Sends who-has requests for `targets` on `interface` (as `own`) and collects the replies
/// for `wait` after the last request: IP → MAC (`aa:bb:…`). `PermissionDenied` without
/// CAP_NET_RAW.
pub fn sweep(
    interface: &str,
    own: Ipv4Addr,
    targets: &[Ipv4Addr],
    wait: Duration,
) -> io::Result<HashMap<Ipv4Addr, String>> {
    let name = CString::new(interface).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: a plain C call on a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(ETH_P_ARP.to_be())) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a socket we own from here on; OwnedFd closes it.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let own_mac = interface_mac(&socket, &name)?;
    let mut link = link_address(index as i32, [0; 6]);
    // Only this interface's ARP frames.
    // SAFETY: `link` is a valid sockaddr_ll and its size is passed with it.
    check(unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const link).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    })?;
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
    // SAFETY: a valid timeval of the size given.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;

    let wanted: HashSet<Ipv4Addr> = targets.iter().copied().collect();
    let mut found = HashMap::new();
    link.sll_halen = 6;
    link.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // Two rounds: a host busy the first time answers the second.
    for _ in 0..2 {
        for target in targets {
            let frame = request(own_mac, own, *target);
            // SAFETY: the frame and the broadcast link address outlive the call.
            let sent = unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const link).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
            collect(&socket, own, &wanted, &mut found, Instant::now())?;
        }
        collect(&socket, own, &wanted, &mut found, Instant::now() + wait / 2)?;
    }
    Ok(found)
}

/// Reads replies until `until` (at least whatever is already waiting).
fn collect(
    socket: &OwnedFd,
    own: Ipv4Addr,
    wanted: &HashSet<Ipv4Addr>,
    found: &mut HashMap<Ipv4Addr, String>,
    until: Instant,
) -> io::Result<()> {
    let mut buffer = [0u8; 1514];
    loop {
        // Past the deadline, only what is already waiting; before it, wait (50 ms at a time).
        let flags = if Instant::now() >= until { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), flags) };
        if n < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                    if Instant::now() >= until {
                        return Ok(());
                    }
                    continue;
                }
                _ => return Err(error),
            }
        }
        if let Some((ip, mac)) = reply(&buffer[..n as usize], own)
            && wanted.contains(&ip)
        {
            found.insert(ip, mac);
        }
    }
}

/// A who-has request for `target`, broadcast.
fn request(own_mac: [u8; 6], own: Ipv4Addr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&own_mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]); // Ethernet, IPv4, sizes, request
    frame[22..28].copy_from_slice(&own_mac);
    frame[28..32].copy_from_slice(&own.octets());
    frame[38..42].copy_from_slice(&target.octets());
    frame
}

/// The sender of an ARP reply addressed to `own`.
fn reply(frame: &[u8], own: Ipv4Addr) -> Option<(Ipv4Addr, String)> {
    if frame.len() < FRAME_LEN || frame[12..14] != ETH_P_ARP.to_be_bytes() || frame[20..22] != [0, 2] {
        return None;
    }
    if frame[38..42] != own.octets() {
        return None;
    }
    let ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    let mac = frame[22..28].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    Some((ip, mac))
}

/// The interface's Ethernet address, asked of the kernel through the socket (so in the
/// socket's network namespace, which /sys need not show).
fn interface_mac(socket: &OwnedFd, name: &CString) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > request.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills the ifreq we pass, which lives across the call.
    check(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut request) })?;
    // SAFETY: after SIOCGIFHWADDR the union holds the hardware address.
    let data = unsafe { request.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(std::array::from_fn(|i| data[i] as u8))
}

fn link_address(index: i32, address: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    link.sll_family = libc::AF_PACKET as u16;
    link.sll_protocol = ETH_P_ARP.to_be();
    link.sll_ifindex = index;
    link.sll_addr[..6].copy_from_slice(&address);
    link
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_the_arp_layout() {
        let own: Ipv4Addr = "192.0.2.1".parse().unwrap();
        let frame = request([2, 0, 0, 0, 0, 1], own, "192.0.2.7".parse().unwrap());
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[38..42], &[192, 0, 2, 7]);
        // The answer from .7, as it would come back.
        let mut answer = frame;
        answer[20..22].copy_from_slice(&[0, 2]);
        answer[22..28].copy_from_slice(&[2, 0, 0, 0xaa, 0, 7]);
        answer[28..32].copy_from_slice(&[192, 0, 2, 7]);
        answer[38..42].copy_from_slice(&own.octets());
        assert_eq!(reply(&answer, own), Some(("192.0.2.7".parse().unwrap(), "02:00:00:aa:00:07".into())));
        assert_eq!(reply(&frame, own), None, "a request is no reply");
    }
}
