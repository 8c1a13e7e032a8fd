//! TODO
pub struct AmoClient;
