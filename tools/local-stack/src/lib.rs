//! Local stack (to be written).
