//! Tables for people, JSON for scripts (`-o json`).

use comfy_table::{presets, Table};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Prints `rows` as JSON, or as a table built from `header` and `cells`.
pub fn print<T: Serialize>(format: Format, rows: &T, header: &[&str], cells: impl FnOnce(&T) -> Vec<Vec<String>>) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows).expect("JSON values serialize")),
        Format::Table => {
            let mut table = Table::new();
            table.load_preset(presets::NOTHING).set_header(header.to_vec());
            for row in cells(rows) {
                table.add_row(row);
            }
            println!("{table}");
        }
    }
}

/// Prints a one-line confirmation, or the object as JSON.
pub fn done<T: Serialize>(format: Format, value: &T, message: &str) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).expect("JSON values serialize")),
        Format::Table => println!("{message}"),
    }
}

pub fn bytes(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    format!("{:.1} GiB", n as f64 / GIB)
}
