//! The Kubernetes API machinery `strait-control` serves, as pure functions over JSON objects.
//!
//! The API server stores and serves objects as `serde_json::Value` (so unknown fields and every
//! version round-trip unchanged); this crate says what the resources are ([`registry`]), how
//! clients discover them ([`discovery`]), how lists are filtered ([`selector`]), how patches
//! apply ([`patch`]), what kubectl reads from OpenAPI ([`openapi`]), how objects are defaulted
//! ([`defaults`]), prepared for an update ([`strategy`]) and checked ([`validate`]), and how
//! `kubectl get` sees them ([`table`]); [`query`] decodes query strings; [`protobuf`] turns
//! kubectl's protobuf request bodies into JSON. Nothing here does I/O, so all of it is
//! unit-tested.

pub mod cron;
pub mod defaults;
pub mod discovery;
pub mod join;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod query;
pub mod registry;
pub mod selector;
pub mod strategy;
pub mod table;
pub mod validate;
