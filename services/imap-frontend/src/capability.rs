//! What the server advertises (RFC 9051 §7.2.2): before login, how to log in; after it, the
//! extensions a session supports. One list, so the greeting, CAPABILITY and the code in the
//! login reply always agree.

/// Offered in every state.
/// LOGIN-REFERRALS (RFC 2221) says a referral may come at login; none is ever sent, which a
/// client that reads the capability handles as it would a server without referrals.
const ALWAYS: &[&str] = &["IMAP4rev1", "IMAP4rev2", "ID", "ENABLE", "LITERAL+", "LOGIN-REFERRALS"];

/// Before login: STARTTLS while the connection is plain and TLS is configured; the SASL
/// mechanisms once passwords may be sent, LOGINDISABLED until then.
pub fn before_login(tls_active: bool, tls_available: bool, allow_plaintext_auth: bool) -> String {
    let mut capabilities = ALWAYS.to_vec();
    capabilities.push("SASL-IR");
    if tls_available && !tls_active {
        capabilities.push("STARTTLS");
    }
    if tls_active || allow_plaintext_auth {
        capabilities.extend(["AUTH=PLAIN", "AUTH=LOGIN"]);
    } else {
        capabilities.push("LOGINDISABLED");
    }
    capabilities.join(" ")
}

/// After login.
pub fn after_login() -> String {
    let mut capabilities = ALWAYS.to_vec();
    capabilities.extend([
        "NAMESPACE",
        "CHILDREN",
        "LIST-EXTENDED",
        "LIST-STATUS",
        "ESEARCH",
        "SEARCHRES",
        "CONTEXT=SEARCH",
        "CONTEXT=SORT",
        "WITHIN",
        "SORT",
        "ESORT",
        "SORT=DISPLAY",
        // SEARCH and SORT compare with i;unicode-casemap (RFC 5255 §4).
        "I18NLEVEL=1",
        "THREAD=ORDEREDSUBJECT",
        "THREAD=REFERENCES",
        "THREAD=REFS",
        // LIST marks the Drafts, Sent, Junk and Trash folders (RFC 6154).
        "SPECIAL-USE",
        "CREATE-SPECIAL-USE",
        "UTF8=ACCEPT",
        "STATUS=SIZE",
        "UNSELECT",
        "UIDPLUS",
        "MULTIAPPEND",
        "CATENATE",
        "URL-PARTIAL",
        "MOVE",
        "IDLE",
        "NOTIFY",
        "METADATA",
        "INPROGRESS",
        "QUOTA",
        "QUOTA=RES-STORAGE",
        "QUOTA=RES-MESSAGE",
        "CONDSTORE",
        "QRESYNC",
        "BINARY",
        "COMPRESS=DEFLATE",
        "UNAUTHENTICATE",
        "PREVIEW",
        // The drafts RFC 8970 replaced, which clients of Dovecot may still use.
        "SNIPPET=FUZZY",
        "PREVIEW=FUZZY",
        "SAVEDATE",
        "OBJECTID",
    ]);
    capabilities.join(" ")
}
