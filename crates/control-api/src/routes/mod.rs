pub mod alerts;
pub mod audit;
pub mod deliveries;
pub mod event_types;
pub mod keys;
pub mod me;
pub mod orgs;
pub mod webhooks;
