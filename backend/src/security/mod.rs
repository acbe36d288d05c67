//! Workgroup Security Services: weekly (Saturday 00:00 UTC) and run-now network scans of
//! the sites devices sit on — external (open ports reachable from the internet, run by the
//! service) and internal (hosts on the device's local network, run by the device) — through
//! a PostgreSQL queue with leases, retries and a `security_scans` history.

pub mod api;
pub mod device;
pub mod external;
pub mod queue;
pub mod schedule;
pub mod worker;
