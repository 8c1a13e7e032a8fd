//! The small traits the domain talks through, one file per domain and one for what they all
//! share. Adapters (amoCRM, DynamoDB, SES, Secrets Manager) implement them; tests implement
//! them in memory or point the real adapters at moto and the sandbox. Nothing here names an
//! adapter's type: a port speaks the domain's language.

pub mod common;
pub mod leads;
pub mod maintenance;
pub mod passport;

pub use common::*;
pub use leads::*;
pub use maintenance::*;
pub use passport::*;
