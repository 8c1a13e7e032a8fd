//! The «Цифровой паспорт»: equipment a customer bought, registered when a deal is won in
//! amoCRM, with its maintenance («ТО») status and next due date, shown in the TMA.

pub mod backfill;
pub mod maintenance;
pub mod model;
pub mod register;

pub use maintenance::MaintenancePolicy;
pub use model::*;
