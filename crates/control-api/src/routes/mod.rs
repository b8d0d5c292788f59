pub mod audit;
pub mod keys;
pub mod orgs;
