//! Which component may call which method. Each role gets the calls its work needs and no
//! others: a compromised IMAP frontend can read and change mail of users who log in through
//! it, but cannot set a password, delete an account or deliver mail as the queue. A method
//! added to the API is refused to everyone until it is added here.
//!
//! A refused call is answered `PERMISSION_DENIED`, naming the caller's role and the method,
//! and counted in `kubemail_grpc_refused_total{identity, method}`.

use std::pin::Pin;
use std::task::{Context, Poll};

use kubemail_proto::admin::admin_server::SERVICE_NAME as ADMIN;
use kubemail_proto::mailstore::mail_store_server::SERVICE_NAME as MAILSTORE;
use kubemail_runtime::identity::{Caller, Role};
use tonic::Status;
use tower::{Layer, Service};

/// The MailStore methods the IMAP and POP3 frontend uses: logins, and mail of logged-in users.
const FRONTEND_METHODS: &[&str] = &[
    "Authenticate",
    "ListMailboxes",
    "CreateMailbox",
    "DeleteMailbox",
    "RenameMailbox",
    "SetSubscribed",
    "SelectMailbox",
    "ClaimRecent",
    "FetchMessages",
    "FetchBody",
    "StoreFlags",
    "Expunge",
    "RemoveMessages",
    "ExpungedSince",
    "CopyMessages",
    "Append",
    "MultiAppend",
    "GetMetadata",
    "SetMetadata",
    "Search",
    "GetQuota",
];

/// Whether `role` may call `method` of `service` (full gRPC names).
pub fn allowed(role: Role, service: &str, method: &str) -> bool {
    match role {
        // Recipients at RCPT, quota before accepting, and SMTP AUTH.
        Role::SmtpIngress => service == MAILSTORE && matches!(method, "ResolveRecipient" | "Authenticate" | "GetQuota"),
        // Local delivery only.
        Role::DeliveryQueue => service == MAILSTORE && matches!(method, "ResolveRecipient" | "Deliver"),
        Role::ImapFrontend => service == MAILSTORE && FRONTEND_METHODS.contains(&method),
        // Domains, accounts, passwords and quotas: the people and the controller who run the platform.
        Role::Operator | Role::Admin => service == ADMIN,
        // The mailstore calls no one's API, least of all its own.
        Role::Mailstore => false,
    }
}

/// Authorizes each request of a gRPC server, as a tower layer inside
/// `tonic::transport::Server::builder()`.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizationLayer {
    /// Whether each request must come from a proven caller; only a server without service
    /// identity (plain text, `kubemail dev`) serves requests that carry none.
    callers_required: bool,
}

impl AuthorizationLayer {
    /// Authorizes by role; a request without a proven caller is refused.
    pub fn by_role() -> AuthorizationLayer {
        AuthorizationLayer { callers_required: true }
    }

    /// Lets through requests without a proven caller: for a server whose connections carry no
    /// identity at all.
    pub fn anyone_unidentified() -> AuthorizationLayer {
        AuthorizationLayer { callers_required: false }
    }
}

impl<S> Layer<S> for AuthorizationLayer {
    type Service = Authorization<S>;

    fn layer(&self, inner: S) -> Authorization<S> {
        Authorization { inner, callers_required: self.callers_required }
    }
}

#[derive(Clone, Debug)]
pub struct Authorization<S> {
    inner: S,
    callers_required: bool,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for Authorization<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        match self.refusal(&request) {
            None => Box::pin(self.inner.call(request)),
            Some(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

impl<S> Authorization<S> {
    /// Why `request` may not be served, if it may not.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<Status> {
        let path = request.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let Some(caller) = request.extensions().get::<Caller>() else {
            return self.callers_required.then(|| {
                refused("unidentified", path);
                Status::permission_denied(format!("{path} needs a caller with a service identity"))
            });
        };
        if allowed(caller.role, service, method) {
            return None;
        }
        refused(caller.role.name(), path);
        tracing::warn!(identity = %caller.role, method = path, client = %caller.address, "gRPC call refused");
        Some(Status::permission_denied(format!("{} may not call {path}", caller.role)))
    }
}

fn refused(identity: &str, method: &str) {
    metrics::counter!("kubemail_grpc_refused_total", "identity" => identity.to_string(), "method" => method.to_string())
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_reaches_only_its_own_calls() {
        assert!(allowed(Role::SmtpIngress, MAILSTORE, "ResolveRecipient"));
        assert!(!allowed(Role::SmtpIngress, MAILSTORE, "Deliver"));
        assert!(!allowed(Role::SmtpIngress, MAILSTORE, "FetchBody"));
        assert!(allowed(Role::DeliveryQueue, MAILSTORE, "Deliver"));
        assert!(!allowed(Role::DeliveryQueue, MAILSTORE, "Authenticate"));
        assert!(allowed(Role::ImapFrontend, MAILSTORE, "FetchBody"));
        assert!(!allowed(Role::ImapFrontend, MAILSTORE, "Deliver"));
        assert!(!allowed(Role::ImapFrontend, ADMIN, "DeleteAccount"));
        assert!(!allowed(Role::ImapFrontend, MAILSTORE, "SomethingNew"));
        assert!(allowed(Role::Operator, ADMIN, "UpsertAccount"));
        assert!(!allowed(Role::Operator, MAILSTORE, "FetchBody"), "the operator reads no mail");
        assert!(allowed(Role::Admin, ADMIN, "SetPassword"));
        for role in Role::ALL {
            assert!(!allowed(role, "kubemail.mailstore.v1.MailStoreX", "Authenticate"), "{role}");
        }
        assert!(Role::ALL.iter().all(|role| !allowed(*role, MAILSTORE, "")), "a path without a method");
    }
}
