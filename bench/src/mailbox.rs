//! A mailbox seen through the MailStore API, for the pipeline benchmark's hooks: wait until it
//! holds a number of messages, and empty it between runs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{
    AuthenticateRequest, ExpungeRequest, Flags, SelectMailboxRequest, StoreFlagsRequest, SystemFlag, UidRange,
};

use crate::setup;

/// How often wait-count looks: as often as the peer's (`imapbench.py wait-count --interval 0.2`).
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct MailboxArgs {
    /// The mailstore's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    mailstore: String,
    #[arg(long)]
    address: String,
    #[arg(long)]
    password: String,
    /// wait-count: the number of messages to wait for.
    #[arg(long, default_value_t = 0)]
    count: usize,
    /// wait-count: give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Polls the INBOX until it holds `--count` messages; fails after `--timeout`.
pub async fn wait_count(args: MailboxArgs) -> Result<()> {
    let (mut client, account_id) = login(&args).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        let request = SelectMailboxRequest { account_id, name: "INBOX".into(), ..Default::default() };
        let held = client.select_mailbox(request).await.context("SelectMailbox")?.into_inner().uids.len();
        if held >= args.count {
            eprintln!("wait-count: {held}/{} after {:.3} s", args.count, started.elapsed().as_secs_f64());
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{held} of {} messages after {} s", args.count, args.timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes every message from the INBOX.
pub async fn clear(args: MailboxArgs) -> Result<()> {
    let (mut client, account_id) = login(&args).await?;
    let request = SelectMailboxRequest { account_id, name: "INBOX".into(), ..Default::default() };
    let mailbox_id = client.select_mailbox(request).await?.into_inner().mailbox.context("no INBOX")?.id;
    let all = vec![UidRange { first: 1, last: u32::MAX }];
    let deleted = Flags { system: SystemFlag::Deleted as u32, keywords: Vec::new() };
    client
        .store_flags(StoreFlagsRequest {
            account_id,
            mailbox_id,
            uids: all,
            operation: Operation::Add as i32,
            flags: Some(deleted),
            unchanged_since: 0,
            held: Vec::new(),
        })
        .await
        .context("StoreFlags")?;
    let expunged = client.expunge(ExpungeRequest { account_id, mailbox_id, uids: Vec::new() }).await?.into_inner();
    eprintln!("clear: {} messages removed", expunged.expunged.len());
    Ok(())
}

async fn login(
    args: &MailboxArgs,
) -> Result<(kubemail_proto::mailstore::mail_store_client::MailStoreClient<tonic::transport::Channel>, i64)> {
    let mut client = setup::mailstore(setup::connect(&args.mailstore).await?);
    let request = AuthenticateRequest { username: args.address.clone(), password: args.password.clone() };
    let account_id = client.authenticate(request).await.context("Authenticate")?.into_inner().account_id;
    Ok((client, account_id))
}
