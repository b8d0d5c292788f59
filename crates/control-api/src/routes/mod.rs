pub mod audit;
pub mod event_types;
pub mod keys;
pub mod orgs;
pub mod webhooks;
