//! What the PostgreSQL forms of the hottest calls share: array parameters, and the columns of
//! their typed rows.
//!
//! The hottest calls have PostgreSQL forms, each beside the general code it stands in for:
//! Deliver and APPEND (`messages/deliver.rs`, `messages/append.rs`, written by the group commit
//! in `messages/group.rs`), FetchBody (`messages/read.rs`), STORE (`messages/flags.rs`), EXPUNGE
//! (`messages/expunge.rs`), body collection (`blobs.rs`) and the SELECT snapshot
//! (`mailboxes.rs`). The general code stays the reference: the mailstore test suite runs against
//! both databases, so these forms must answer exactly what it answers.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::LockedMailbox;
use crate::{Error, Result};

/// The mailbox columns a writing statement returns.
pub(super) fn mailbox_row(row: &PgRow) -> Result<LockedMailbox> {
    Ok(LockedMailbox {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        uidvalidity: u32_column(row, "uidvalidity")?,
        uid_next: u32_column(row, "uid_next")?,
        highest_modseq: u64_column(row, "highest_modseq")?,
    })
}

/// A PostgreSQL array literal of `items` (`{"a","b"}`), every element quoted so that spaces,
/// commas and braces stay inside it.
pub(super) fn array_literal(items: impl IntoIterator<Item = String>) -> String {
    let mut literal = String::from("{");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if matches!(c, '"' | '\\') {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

pub(super) fn u32_column(row: &PgRow, column: &str) -> Result<u32> {
    to_u32(column, row.try_get(column)?)
}

pub(super) fn u64_column(row: &PgRow, column: &str) -> Result<u64> {
    to_u64(column, row.try_get(column)?)
}

pub(super) fn to_u32(what: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| out_of_range(what, value))
}

pub(super) fn to_u64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| out_of_range(what, value))
}

fn out_of_range(what: &str, value: i64) -> Error {
    Error::Internal(format!("{what} {value} out of range"))
}
