//! The address a request came from: the TCP peer, or — only when that peer is one of the
//! configured trusted proxies — the nearest untrusted hop of `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::http::Error;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
            .ok_or_else(|| anyhow::anyhow!("server started without connection info"))?;
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(resolve(peer, forwarded, &state.config.server.trusted_proxies)))
    }
}

/// Walks `X-Forwarded-For` from the right (the hop our proxy added) while the hop is a
/// trusted proxy; the first untrusted address is the client. Entries left of it could have
/// been written by anyone and are ignored. A hop that is no address (`unknown`, garbage)
/// ends the walk at the last hop known: what lies to its left is anybody's word. Addresses
/// are canonical (`::ffff:192.0.2.1` is 192.0.2.1).
pub fn resolve<'a>(peer: IpAddr, forwarded: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(hop) = hop_address(hop) else { break };
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

/// The address of one `X-Forwarded-For` hop, as proxies write them: `ip`, `ip:port`,
/// `[v6]` or `[v6]:port`.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let address =
        hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip())).or_else(|| {
            hop.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|inner| inner.parse().ok())
        })?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_only_counts_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        // Untrusted peer: its header is ignored.
        assert_eq!(resolve(ip("127.1.0.9"), ["127.0.0.5"].into_iter(), &[]), ip("127.1.0.9"));
        // Trusted proxy: the nearest untrusted hop, not a spoofed leftmost one.
        assert_eq!(
            resolve(ip("127.0.0.1"), ["198.51.100.1, 203.0.113.7, 127.0.0.2"].into_iter(), &trusted),
            ip("203.0.113.7")
        );
        // Trusted proxy without a header: the proxy itself.
        assert_eq!(resolve(ip("127.0.0.1"), std::iter::empty(), &trusted), ip("127.0.0.1"));
        // Hops written with ports or brackets are addresses still.
        for written in ["203.0.113.7:4711", "[2001:db8::7]", "[2001:db8::7]:4711"] {
            let expected = if written.contains("2001") { ip("2001:db8::7") } else { ip("203.0.113.7") };
            let header = format!("198.51.100.1, {written}, 127.0.0.2");
            assert_eq!(resolve(ip("127.0.0.1"), [header.as_str()].into_iter(), &trusted), expected);
        }
        // A hop that is no address ends the walk: the attacker's entry left of it is not taken.
        for unreadable in ["unknown", "_hidden", "not an address"] {
            let header = format!("198.51.100.1, {unreadable}, 127.0.0.2");
            assert_eq!(resolve(ip("127.0.0.1"), [header.as_str()].into_iter(), &trusted), ip("127.0.0.2"));
        }
        // IPv4-mapped addresses are the IPv4 addresses they are.
        assert_eq!(resolve(ip("::ffff:127.0.0.1"), ["::ffff:203.0.113.7"].into_iter(), &trusted), ip("203.0.113.7"));
    }
}
