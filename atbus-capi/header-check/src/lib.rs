//! Nothing here: the check is `tests/header.rs` (see Cargo.toml).
