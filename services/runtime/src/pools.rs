//! Database connection pools as the services configure them.

use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database};

/// A pooled connection idle for longer than this is checked before it is handed out (the
/// database may have restarted, or a proxy dropped it, meanwhile). One used more recently is
/// not: the check is a round trip to the database (on SQLite, to the connection's thread),
/// which on every acquire cost about as much as a small statement. A connection that fails in
/// use is closed when it is given back, which sqlx checks every time.
pub const CHECK_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// `options` checking a connection before handing it out only after [`CHECK_WHEN_IDLE_FOR`].
pub fn checked_when_idle<DB: Database>(options: PoolOptions<DB>) -> PoolOptions<DB> {
    options.test_before_acquire(false).before_acquire(|conn, meta| {
        Box::pin(async move {
            if meta.idle_for > CHECK_WHEN_IDLE_FOR {
                conn.ping().await?;
            }
            Ok(true)
        })
    })
}
