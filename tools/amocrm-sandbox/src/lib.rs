//! The amoCRM sandbox (to be written).
