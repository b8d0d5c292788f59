//! Hookline's shared vocabulary: the types and rules every service agrees on.
//!
//! Nothing in this crate performs I/O. Values that cross a trust boundary are
//! parsed into newtypes here ("parse, don't validate"): once a value is an
//! [`api_key::ApiKey`], a [`webhook_url::WebhookUrl`] or an [`event::EventType`], it is valid.

pub mod api_key;
pub mod crypto;
pub mod event;
pub mod filter;
pub mod header;
pub mod id;
pub mod net;
pub mod ordering;
pub mod retry;
pub mod scope;
pub mod signing;
pub mod status;
pub mod trace;
pub mod webhook_url;
