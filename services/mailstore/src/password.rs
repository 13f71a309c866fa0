//! Password hashing: argon2id (PHC string format), run off the async threads because a hash
//! takes tens of milliseconds of CPU by design. At most one hash per CPU runs at a time: more
//! would not finish sooner, and each holds argon2's 19 MiB of working memory, which the
//! allocator keeps once a thread has used it (a burst of logins would otherwise leave hundreds
//! of MiB behind).

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::{Error, Result};

/// Passwords longer than this are refused rather than hashed (argon2 accepts any length, but
/// an unbounded input is a cheap way to burn CPU).
const MAX_PASSWORD: usize = 1024;

/// One permit per CPU.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    })
}

/// Hashes `password` with argon2id and a fresh random salt.
pub async fn hash(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(Error::invalid("password must not be empty"));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Error::invalid(format!("password longer than {MAX_PASSWORD} octets")));
    }
    let password = password.to_owned();
    let _slot = hashing_slots().acquire().await.map_err(|e| Error::Internal(format!("hashing slots: {e}")))?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| Error::Internal(format!("hashing password: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
}

/// Whether `password` matches the stored PHC string. A malformed stored hash never matches.
pub async fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    let (password, stored) = (password.to_owned(), stored.to_owned());
    let Ok(_slot) = hashing_slots().acquire().await else { return false };
    tokio::task::spawn_blocking(move || {
        // A stored value that is not a PHC string fails verification like a wrong password.
        Argon2::default().verify_password(password.as_bytes(), stored.as_str()).is_ok()
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, verified against when the user does not exist, so a failed
/// login takes as long for an unknown user as for a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        Argon2::default().hash_password(&random).map(|hash| hash.to_string()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let first = hash("correct horse").await.unwrap();
        let second = hash("correct horse").await.unwrap();
        assert!(first.starts_with("$argon2id$"));
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify("correct horse", &first).await);
        assert!(!verify("wrong horse", &first).await);
        assert!(!verify("anything", "not a hash").await);
        assert!(hash("").await.is_err());
    }
}
