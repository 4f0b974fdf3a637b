//! How commands print: JSON documents (with `schema_version`) or tables, on
//! stdout.

use std::io::{self, Write};

use anyhow::Context;
use serde::Serialize;

/// The version of every JSON document eehctl prints.
pub const SCHEMA_VERSION: u32 = 1;

/// Where and how a command prints its result.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of a table.
    pub json: bool,
}

/// A JSON document: `schema_version` followed by the command's fields.
#[derive(Serialize)]
struct Document<'a, T> {
    schema_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

impl Output {
    /// Prints `body` as one JSON document, or `human()` as text.
    pub fn print<T: Serialize>(&self, body: &T, human: impl FnOnce() -> String) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let written = if self.json {
            serde_json::to_writer_pretty(&mut stdout, &Document { schema_version: SCHEMA_VERSION, body })
                .map_err(io::Error::from)
                .and_then(|()| writeln!(stdout))
        } else {
            write!(stdout, "{}", human())
        };
        match written {
            // The reader has gone (`eehctl topo | head`): nothing left to say.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("Cannot write to stdout"),
        }
    }
}

impl Output {
    /// Prints `body` as one line of JSON (a stream of documents, NDJSON), or
    /// `human()` as text, and flushes it: for output that follows events.
    pub fn line<T: Serialize>(&self, body: &T, human: impl FnOnce() -> String) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let written = if self.json {
            serde_json::to_writer(&mut stdout, &Document { schema_version: SCHEMA_VERSION, body })
                .map_err(io::Error::from)
                .and_then(|()| writeln!(stdout))
        } else {
            write!(stdout, "{}", human())
        };
        written.and_then(|()| stdout.flush()).context("Cannot write to stdout")
    }
}

/// A table with eehctl's look: a header row, no borders.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING).set_header(header.to_vec());
    table
}
