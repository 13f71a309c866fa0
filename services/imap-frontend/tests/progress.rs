//! INPROGRESS (RFC 9585): a SEARCH that reads messages, a FETCH of bodies and a COPY tell the
//! client how far they got while they run (here as often as possible, so every step shows).

mod common;

use std::time::Duration;

use common::{Fixture, Settings, test_settings};

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello there.\r\n";

#[tokio::test]
async fn long_commands_tell_how_far_they_got() {
    let f = Fixture::with_settings(Settings { progress_interval: Duration::ZERO, ..test_settings() }).await;
    for _ in 0..3 {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" INPROGRESS"), "{capabilities}");
    client.command("s SELECT INBOX").await.expect_ok();

    let searched = client.command("a SEARCH BODY there").await.expect_ok();
    let expected: Vec<String> = (1..=3)
        .map(|done| format!("* OK [INPROGRESS (\"a\" {done} 3)] Searching the messages"))
        .chain(["* SEARCH 1 2 3".to_string()])
        .collect();
    assert_eq!(searched, expected);

    let fetched = client.command("b FETCH 1:3 BODY.PEEK[]").await.expect_ok();
    let told: Vec<&String> = fetched.iter().filter(|line| line.starts_with("* OK [INPROGRESS (\"b\"")).collect();
    assert_eq!(told.len(), 3, "{fetched:?}");
    assert_eq!(told[2], "* OK [INPROGRESS (\"b\" 3 3)] Fetching the messages");

    let copied = client.command("c COPY 1:3 Trash").await;
    assert!(copied.status().starts_with("OK [COPYUID"), "{copied:?}");
    assert!(
        copied.untagged.iter().any(|line| line == "* OK [INPROGRESS (\"c\" NIL 3)] Copying the messages"),
        "{copied:?}"
    );
}
