//! A user's password checked for IMAP and POP3 alike: the default domain added to a login name
//! without one, then a login remembered lately (`kubemail_runtime::login_cache`), else the
//! mailstore's argon2id verification, remembered when it succeeds.

use kubemail_proto::mailstore::AuthenticateRequest;
use kubemail_runtime::login_cache::Login;
use tonic::Code;

use crate::services::Services;

/// Whom a session is logged in as.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: i64,
    pub address: String,
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No such user, or the wrong password.
    Credentials,
    /// The account exists and the password is right, but it is suspended.
    Suspended,
    /// The mailstore could not be asked; the client may try again later.
    Unavailable,
}

/// Checks `username` and `password`; the account they log in to.
pub async fn check(services: &Services, username: String, password: String) -> Result<Account, Refused> {
    let username = match &services.settings.default_domain {
        Some(domain) if !username.contains('@') => format!("{username}@{domain}"),
        _ => username,
    };
    let pending = match services.logins.lookup(&username, &password) {
        Ok(login) => return Ok(Account { id: login.account_id, address: login.address }),
        Err(pending) => pending,
    };
    let request = AuthenticateRequest { username, password };
    match services.mailstore.clone().authenticate(request).await {
        Ok(response) => {
            let response = response.into_inner();
            let login = Login { account_id: response.account_id, address: response.address };
            services.logins.remember(pending, login.clone());
            Ok(Account { id: login.account_id, address: login.address })
        }
        Err(status) if status.code() == Code::PermissionDenied => Err(Refused::Suspended),
        Err(status) if matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument) => {
            Err(Refused::Credentials)
        }
        Err(status) => {
            tracing::warn!(%status, "authentication failed at the mailstore");
            Err(Refused::Unavailable)
        }
    }
}

/// The authentication identity and password of a SASL PLAIN response (RFC 4616:
/// `authzid NUL authcid NUL passwd`); an authorization identity other than the authentication
/// identity (acting as another user) is not allowed.
pub fn plain_credentials(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|byte| *byte == 0);
    let (authorize_as, username, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || (!authorize_as.is_empty() && authorize_as != username) {
        return None;
    }
    Some((String::from_utf8(username.to_vec()).ok()?, String::from_utf8(password.to_vec()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::plain_credentials;

    #[test]
    fn plain_responses_name_one_user_and_a_password() {
        let pair = |username: &str, password: &str| Some((username.to_string(), password.to_string()));
        assert_eq!(plain_credentials(b"\0alice@example.org\0secret"), pair("alice@example.org", "secret"));
        assert_eq!(
            plain_credentials(b"alice@example.org\0alice@example.org\0secret"),
            pair("alice@example.org", "secret")
        );
        assert_eq!(plain_credentials(b"bob@example.org\0alice@example.org\0secret"), None, "no acting as another");
        assert_eq!(plain_credentials(b"alice@example.org\0secret"), None);
        assert_eq!(plain_credentials(b"\0alice\0secret\0more"), None);
    }
}
