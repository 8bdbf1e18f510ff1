//! Authorization: the seam RBAC plugs into.
//!
//! Authentication happens in `http` (bearer tokens from `pki`). Until RBAC is served (a later
//! issue), every authenticated identity may do everything: [`AllowAuthenticated`]. The check
//! already runs on every request with the attributes RBAC needs, so RBAC is one more
//! [`Authorizer`] and nothing else changes.

use crate::{error::ApiError, pki::Identity};

/// What a request wants to do, in RBAC's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Decides whether an identity may do something.
pub trait Authorizer: Send + Sync {
    /// `Ok` to allow; a 403 `ApiError` naming what was refused otherwise.
    fn authorize(&self, identity: &Identity, attributes: &Attributes<'_>) -> Result<(), ApiError>;
}

/// Every authenticated identity may do everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, _: &Identity, _: &Attributes<'_>) -> Result<(), ApiError> {
        Ok(())
    }
}
