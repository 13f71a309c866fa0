//! Mailbox commands after login: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB,
//! NAMESPACE, STATUS and ENABLE, with names in modified UTF-7 or, once enabled, UTF-8.

mod common;

use common::Fixture;

#[tokio::test]
async fn folders_are_created_listed_renamed_and_deleted() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    for name in ["Notes", "Lists/rust", "Lists/rust/old"] {
        client.command(&format!("c CREATE \"{name}\"")).await.expect_ok();
    }
    let created = client.command("c CREATE Archive/").await;
    created.expect_ok();
    for (line, code) in [("d CREATE Notes", "NO [ALREADYEXISTS]"), ("e CREATE inbox", "NO [ALREADYEXISTS]")] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with(code), "{line}: {refused:?}");
    }

    let all = client.command("l LIST \"\" *").await.expect_ok();
    assert_eq!(
        all,
        [
            "* LIST (\\HasNoChildren) \"/\" \"Archive\"",
            "* LIST (\\Drafts \\HasNoChildren) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren) \"/\" \"INBOX\"",
            "* LIST (\\Junk \\HasNoChildren) \"/\" \"Junk\"",
            "* LIST (\\HasChildren) \"/\" \"Lists\"",
            "* LIST (\\HasChildren) \"/\" \"Lists/rust\"",
            "* LIST (\\HasNoChildren) \"/\" \"Lists/rust/old\"",
            "* LIST (\\HasNoChildren) \"/\" \"Notes\"",
            "* LIST (\\Sent \\HasNoChildren) \"/\" \"Sent\"",
            "* LIST (\\Trash \\HasNoChildren) \"/\" \"Trash\"",
        ],
        "every folder with its special use; parents are made along"
    );
    let top = client.command("l LIST \"\" %").await.expect_ok();
    assert_eq!(top.len(), 8, "one level only: {top:?}");
    let under = client.command("l LIST Lists/ %").await.expect_ok();
    assert_eq!(under, ["* LIST (\\HasChildren) \"/\" \"Lists/rust\""]);
    let separator = client.command("l LIST \"\" \"\"").await.expect_ok();
    assert_eq!(separator, ["* LIST (\\Noselect) \"/\" \"\""]);
    let inbox = client.command("l LIST \"\" inbox").await.expect_ok();
    assert_eq!(inbox, ["* LIST (\\HasNoChildren) \"/\" \"INBOX\""]);

    client.command("r RENAME Lists/rust Rust").await.expect_ok();
    let renamed = client.command("l LIST \"\" Rust*").await.expect_ok();
    assert_eq!(renamed.len(), 2, "children move along: {renamed:?}");
    let refused = client.command("r RENAME Nothing Else").await;
    assert!(refused.status().starts_with("NO [NONEXISTENT]"), "{refused:?}");
    let refused = client.command("r RENAME Rust Drafts").await;
    assert!(refused.status().starts_with("NO [ALREADYEXISTS]"), "{refused:?}");

    // A deleted parent stays in the hierarchy as a name that cannot be selected.
    client.command("x DELETE Rust").await.expect_ok();
    let parent = client.command("l LIST \"\" Rust*").await.expect_ok();
    assert_eq!(parent[0], "* LIST (\\Noselect \\HasChildren) \"/\" \"Rust\"", "{parent:?}");
    client.command("x DELETE Notes").await.expect_ok();
    for (line, code) in [("x DELETE Notes", "NO [NONEXISTENT]"), ("x DELETE INBOX", "NO [CANNOT]")] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with(code), "{line}: {refused:?}");
    }
    let left = client.command("l LIST \"\" %").await.expect_ok();
    assert!(!left.iter().any(|line| line.ends_with("\"Notes\"")), "{left:?}");
}

#[tokio::test]
async fn names_are_modified_utf7_until_utf8_is_enabled() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("c CREATE Entw&APw-rfe").await.expect_ok();
    client.command("c CREATE \"Tom &- Jerry\"").await.expect_ok();
    let listed = client.command("l LIST \"\" *").await.expect_ok();
    assert!(listed.contains(&"* LIST (\\HasNoChildren) \"/\" \"Entw&APw-rfe\"".to_string()), "{listed:?}");
    assert!(listed.contains(&"* LIST (\\HasNoChildren) \"/\" \"Tom &- Jerry\"".to_string()), "{listed:?}");
    let refused = client.command("c CREATE &Jjo").await;
    assert!(refused.status().starts_with("BAD"), "broken modified UTF-7: {refused:?}");

    let enabled = client.command("e ENABLE UTF8=ACCEPT").await.expect_ok();
    assert_eq!(enabled, ["* ENABLED UTF8=ACCEPT"]);
    let again = client.command("e ENABLE UTF8=ACCEPT METADATA").await.expect_ok();
    assert_eq!(again, ["* ENABLED"], "nothing new: already on, or not offered");
    let listed = client.command("l LIST \"\" Entw*").await.expect_ok();
    assert_eq!(listed, ["* LIST (\\HasNoChildren) \"/\" \"Entwürfe\""]);
    client.command("c CREATE \"Größe\"").await.expect_ok();
    let listed = client.command("l LIST \"\" Gr*").await.expect_ok();
    assert_eq!(listed, ["* LIST (\\HasNoChildren) \"/\" \"Größe\""]);

    let mut rev1 = f.logged_in("alice@example.org").await;
    let listed = rev1.command("l LIST \"\" Gr*").await.expect_ok();
    assert_eq!(listed, ["* LIST (\\HasNoChildren) \"/\" \"Gr&APYA3w-e\""], "other sessions keep modified UTF-7");
}

#[tokio::test]
async fn subscriptions_are_names_that_lsub_and_list_subscribed_show() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("c CREATE News").await.expect_ok();
    assert_eq!(client.command("l LSUB \"\" N*").await.expect_ok(), Vec::<String>::new(), "CREATE does not subscribe");
    client.command("s SUBSCRIBE News").await.expect_ok();
    assert_eq!(client.command("l LSUB \"\" N*").await.expect_ok(), ["* LSUB (\\HasNoChildren) \"/\" \"News\""]);

    client.command("s SUBSCRIBE Missing").await.expect_ok();
    assert_eq!(
        client.command("l LSUB \"\" M*").await.expect_ok(),
        ["* LSUB (\\Noselect \\HasNoChildren) \"/\" \"Missing\""]
    );
    let missing = client.command("l LIST (SUBSCRIBED) \"\" M*").await.expect_ok();
    assert_eq!(missing, ["* LIST (\\NonExistent \\Subscribed) \"/\" \"Missing\""]);
    assert_eq!(client.command("l LIST \"\" M*").await.expect_ok(), Vec::<String>::new(), "no mailbox to list");

    client.command("d DELETE News").await.expect_ok();
    let news = client.command("l LIST (SUBSCRIBED) \"\" News").await.expect_ok();
    assert_eq!(news, ["* LIST (\\NonExistent \\Subscribed) \"/\" \"News\""], "DELETE does not unsubscribe");
    client.command("u UNSUBSCRIBE News").await.expect_ok();
    client.command("u UNSUBSCRIBE Never").await.expect_ok();
    assert_eq!(client.command("l LIST (SUBSCRIBED) \"\" N*").await.expect_ok(), Vec::<String>::new());
}

#[tokio::test]
async fn create_gives_a_special_use_when_asked() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok();
    assert!(capabilities[0].split(' ').any(|word| word == "CREATE-SPECIAL-USE"), "{capabilities:?}");
    client.command("c CREATE \"Old mail\" (USE (\\Archive))").await.expect_ok();
    let special = client.command("l LIST (SPECIAL-USE) \"\" Old*").await.expect_ok();
    assert_eq!(special, ["* LIST (\\Archive \\HasNoChildren) \"/\" \"Old mail\""]);
    for (line, why) in [
        ("d CREATE Everything (USE (\\All))", "no virtual mailboxes"),
        ("d CREATE Two (USE (\\Archive \\Trash))", "one special use each"),
        ("d CREATE Odd (USE (\\Bogus))", "no such special use"),
    ] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("NO [USEATTR]"), "{why}: {refused:?}");
    }
    let malformed = client.command("e CREATE Odd (COLOUR (red))").await;
    assert!(malformed.status().starts_with("BAD"), "{malformed:?}");
    let listed = client.command("l LIST \"\" *").await.expect_ok();
    assert!(!listed.iter().any(|line| line.contains("Everything") || line.contains("Two") || line.contains("Odd")));
}

#[tokio::test]
async fn a_subscribed_child_below_the_pattern_shows_its_parent() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("c CREATE Lists/rust").await.expect_ok();
    client.command("s SUBSCRIBE Lists/rust").await.expect_ok();
    // `%` does not reach Lists/rust: LSUB lists its unsubscribed parent as \Noselect (RFC 3501
    // §6.3.9), LIST-EXTENDED with CHILDINFO (RFC 5258 §3.5).
    let lsub = client.command("l LSUB \"\" L%").await.expect_ok();
    assert_eq!(lsub, ["* LSUB (\\Noselect \\HasChildren) \"/\" \"Lists\""]);
    let recursive = client.command("r LIST (SUBSCRIBED RECURSIVEMATCH) \"\" L%").await.expect_ok();
    assert_eq!(recursive, ["* LIST (\\HasChildren) \"/\" \"Lists\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]);
    // `*` reaches it: the child is listed itself, and its parent is not.
    let lsub = client.command("l LSUB \"\" L*").await.expect_ok();
    assert_eq!(lsub, ["* LSUB (\\HasNoChildren) \"/\" \"Lists/rust\""]);
    let recursive = client.command("r LIST (SUBSCRIBED RECURSIVEMATCH) \"\" L*").await.expect_ok();
    assert_eq!(recursive, ["* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Lists/rust\""]);
    // Once the parent is subscribed too, it is listed for itself, and still with CHILDINFO.
    client.command("s SUBSCRIBE Lists").await.expect_ok();
    let lsub = client.command("l LSUB \"\" L%").await.expect_ok();
    assert_eq!(lsub, ["* LSUB (\\HasChildren) \"/\" \"Lists\""]);
    let recursive = client.command("r LIST (SUBSCRIBED RECURSIVEMATCH) \"\" L%").await.expect_ok();
    assert_eq!(recursive, ["* LIST (\\HasChildren \\Subscribed) \"/\" \"Lists\" (\"CHILDINFO\" (\"SUBSCRIBED\"))"]);
}

#[tokio::test]
async fn status_counts_what_the_mailstore_holds() {
    let f = Fixture::start().await;
    let message = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";
    f.mailstore.deliver("alice@example.org", message).await;
    f.mailstore.deliver("alice@example.org", message).await;
    let mut client = f.logged_in("alice@example.org").await;
    let status = client.command("s STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE)").await.expect_ok();
    assert_eq!(
        status,
        [format!("* STATUS \"INBOX\" (MESSAGES 2 UIDNEXT 3 UNSEEN 2 DELETED 0 SIZE {})", 2 * message.len())]
    );
    let validity = client.command("s STATUS inbox (UIDVALIDITY)").await.expect_ok();
    assert!(validity[0].starts_with("* STATUS \"INBOX\" (UIDVALIDITY "), "{validity:?}");
    let refused = client.command("s STATUS Missing (MESSAGES)").await;
    assert!(refused.status().starts_with("NO [NONEXISTENT]"), "{refused:?}");
    let namespace = client.command("n NAMESPACE").await.expect_ok();
    assert_eq!(namespace, ["* NAMESPACE ((\"\" \"/\")) NIL NIL"]);
}

#[tokio::test]
async fn one_account_never_sees_anothers_folders() {
    let f = Fixture::start().await;
    let mut alice = f.logged_in("alice@example.org").await;
    alice.command("c CREATE Private").await.expect_ok();
    let mut bob = f.logged_in("bob@example.org").await;
    let listed = bob.command("l LIST \"\" *").await.expect_ok();
    assert!(!listed.iter().any(|line| line.contains("Private")), "{listed:?}");
    let refused = bob.command("s STATUS Private (MESSAGES)").await;
    assert!(refused.status().starts_with("NO [NONEXISTENT]"), "{refused:?}");
    let refused = bob.command("d DELETE Private").await;
    assert!(refused.status().starts_with("NO [NONEXISTENT]"), "{refused:?}");
}

#[tokio::test]
async fn list_extended_selects_and_returns_more() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n").await;
    let mut client = f.logged_in("alice@example.org").await;
    for name in ["Lists", "Lists/rust", "Notes"] {
        client.command(&format!("c CREATE {name}")).await.expect_ok();
    }
    // Of the new folders only Lists/rust is subscribed, with the special ones but Trash.
    client.command("s SUBSCRIBE Lists/rust").await.expect_ok();
    client.command("u UNSUBSCRIBE Trash").await.expect_ok();

    let special = client.command("a LIST (SPECIAL-USE) \"\" *").await.expect_ok();
    assert_eq!(
        special,
        [
            "* LIST (\\Drafts \\HasNoChildren) \"/\" \"Drafts\"",
            "* LIST (\\Junk \\HasNoChildren) \"/\" \"Junk\"",
            "* LIST (\\Sent \\HasNoChildren) \"/\" \"Sent\"",
            "* LIST (\\Trash \\HasNoChildren) \"/\" \"Trash\"",
        ]
    );
    let subscribed = client.command("b LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %").await.expect_ok();
    assert_eq!(
        subscribed,
        [
            "* LIST (\\Drafts \\HasNoChildren \\Subscribed) \"/\" \"Drafts\"",
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* LIST (\\Junk \\HasNoChildren \\Subscribed) \"/\" \"Junk\"",
            "* LIST (\\HasChildren) \"/\" \"Lists\" (\"CHILDINFO\" (\"SUBSCRIBED\"))",
            "* LIST (\\Sent \\HasNoChildren \\Subscribed) \"/\" \"Sent\"",
        ],
        "subscribed ones, and the parent of a subscribed child"
    );
    let patterns = client
        .command("c LIST \"\" (\"INBOX\" {5+}\r\nNo*es) RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))")
        .await;
    assert_eq!(
        patterns.expect_ok(),
        [
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"",
            "* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1)",
            "* LIST (\\HasNoChildren) \"/\" \"Notes\"",
            "* STATUS \"Notes\" (MESSAGES 0 UNSEEN 0)",
        ],
        "two patterns; STATUS after each mailbox (RFC 5819)"
    );
    let capabilities = client.command("d CAPABILITY").await.expect_ok();
    for capability in ["LIST-EXTENDED", "LIST-STATUS", "ESEARCH"] {
        assert!(capabilities[0].split(' ').any(|word| word == capability), "{capability}: {capabilities:?}");
    }
    for line in ["e LIST (RECURSIVEMATCH) \"\" *", "f LIST (NOSUCH) \"\" *", "g LIST \"\" * RETURN (STATUS (BOGUS))"] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("BAD"), "{line}: {refused:?}");
    }
}
