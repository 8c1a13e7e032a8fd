//! Support for the fuzz targets in `fuzz_targets/`: the properties they check are the ones the
//! stable proptest suite checks, from the same file.

#[path = "../../shared/tests/invariants/mod.rs"]
pub mod invariants;
