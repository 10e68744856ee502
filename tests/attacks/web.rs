//! See the crate's map in main.rs.
