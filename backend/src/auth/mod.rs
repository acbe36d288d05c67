//! Authentication and authorisation: users (argon2id passwords, JWT sessions), customer
//! integrations (read-only API tokens), devices (device credentials), and the permission
//! guard every workgroup-scoped handler goes through.

pub mod access;
pub mod api_tokens;
pub mod cache;
pub mod client_addr;
pub mod jwt;
pub mod login;
pub mod password;
pub mod principal;
pub mod rate_limit;
pub mod secret;
pub mod throttle;

pub use access::{Access, Permission};
pub use principal::{AuthenticatedDevice, Caller, CurrentUser};
