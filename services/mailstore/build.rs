//! Builds the mailstore again when a migration is added or changed: `sqlx::migrate!` embeds the
//! migration files, and cargo does not watch them otherwise.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
