//! `kubemail admin`: the Admin gRPC API from the command line. Errors come back as one line:
//! the server's message, or why the mailstore could not be reached.

use std::io::BufRead;

use anyhow::{Context, Result, anyhow, bail};
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::*;
use kubemail_runtime::identity::{self, IdentityError, Role};
use kubemail_runtime::shutdown::Shutdown;
use tonic::transport::Channel;

use crate::cli::{AdminArgs, AdminCommand, AliasCommand, DomainCommand, MailboxCommand};

pub async fn run(args: AdminArgs) -> Result<()> {
    // Read before connecting, so a missing password fails without touching the server.
    let password = match &args.command {
        AdminCommand::Mailbox(MailboxCommand::Add { .. } | MailboxCommand::Passwd { .. }) => Some(read_password()?),
        _ => None,
    };
    let mut admin = connect(&args).await?;
    let out = &mut std::io::stdout().lock();
    match args.command {
        AdminCommand::Domain(command) => domain(&mut admin, command, out).await,
        AdminCommand::Mailbox(command) => mailbox(&mut admin, command, password.unwrap_or_default(), out).await,
        AdminCommand::Alias(command) => alias(&mut admin, command, out).await,
    }
}

async fn connect(args: &AdminArgs) -> Result<AdminClient<Channel>> {
    let url = &args.mailstore;
    // One command, over before its identity could need renewing.
    let shutdown = Shutdown::new();
    let identity = args.identity.load(Role::Admin, &shutdown).context("the service identity of `kubemail admin`")?;
    match identity::connect(url, identity.as_ref(), Role::Mailstore).await {
        Ok(channel) => Ok(AdminClient::new(channel)),
        Err(IdentityError::Unreachable(why)) => {
            bail!("cannot reach the mailstore at {url} (is `kubemail dev` running? see --mailstore): {why}")
        }
        Err(error) => Err(anyhow!("invalid mailstore address {url:?}: {error}")),
    }
}

/// The first line of standard input, without its line ending.
fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password on standard input (pipe it in, e.g. `echo 'secret' | kubemail admin mailbox add …`)");
    }
    Ok(password)
}

/// The server's message for a failed call, without tonic's debug wrapping.
fn status(error: tonic::Status) -> anyhow::Error {
    anyhow!("{} ({:?})", error.message(), error.code())
}

async fn domain(admin: &mut AdminClient<Channel>, command: DomainCommand, out: &mut impl std::io::Write) -> Result<()> {
    match command {
        DomainCommand::Add { name, catch_all, default_quota_storage, default_quota_messages } => {
            let domain = admin
                .upsert_domain(UpsertDomainRequest { name, catch_all, default_quota_storage, default_quota_messages })
                .await
                .map_err(status)?
                .into_inner();
            writeln!(out, "domain {} is served", domain.name)?;
        }
        DomainCommand::List => {
            let domains = admin.list_domains(ListDomainsRequest {}).await.map_err(status)?.into_inner().domains;
            let rows = domains.iter().map(|d| {
                vec![
                    d.name.clone(),
                    d.accounts.to_string(),
                    or_dash(&d.catch_all),
                    quota(d.default_quota_storage, format_size),
                    quota(d.default_quota_messages, |n| n.to_string()),
                ]
            });
            table(out, &["DOMAIN", "MAILBOXES", "CATCH-ALL", "DEFAULT QUOTA", "DEFAULT MESSAGES"], rows)?;
        }
        DomainCommand::Remove { name, force } => {
            admin.delete_domain(DeleteDomainRequest { name: name.clone(), force }).await.map_err(status)?;
            writeln!(out, "domain {name} removed")?;
        }
    }
    Ok(())
}

async fn mailbox(
    admin: &mut AdminClient<Channel>,
    command: MailboxCommand,
    password: String,
    out: &mut impl std::io::Write,
) -> Result<()> {
    match command {
        MailboxCommand::Add { address, quota_storage, quota_messages, .. } => {
            let account = admin
                .upsert_account(UpsertAccountRequest {
                    address,
                    password,
                    quota_storage,
                    quota_messages,
                    suspended: None,
                })
                .await
                .map_err(status)?
                .into_inner();
            writeln!(out, "mailbox {} is ready", account.address)?;
        }
        MailboxCommand::List { domain } => {
            let accounts =
                admin.list_accounts(ListAccountsRequest { domain }).await.map_err(status)?.into_inner().accounts;
            let rows = accounts.iter().map(|a| {
                vec![
                    a.address.clone(),
                    format_size(a.used_storage),
                    quota(a.quota_storage, format_size),
                    a.used_messages.to_string(),
                    quota(a.quota_messages, |n| n.to_string()),
                    if a.suspended { "suspended" } else { "active" }.to_string(),
                    or_dash(&a.aliases.join(",")),
                ]
            });
            table(out, &["ADDRESS", "USED", "QUOTA", "MESSAGES", "MAX MESSAGES", "STATE", "ALIASES"], rows)?;
        }
        MailboxCommand::Passwd { address, .. } => {
            admin.set_password(SetPasswordRequest { address: address.clone(), password }).await.map_err(status)?;
            writeln!(out, "password of {address} changed")?;
        }
        MailboxCommand::Quota { address, storage, messages } => {
            let account = admin
                .set_quota(SetQuotaRequest { address, quota_storage: storage, quota_messages: messages })
                .await
                .map_err(status)?
                .into_inner();
            writeln!(
                out,
                "quota of {}: {} and {} messages",
                account.address,
                quota(storage, format_size),
                quota(messages, |n| n.to_string())
            )?;
        }
        MailboxCommand::Remove { address, purge } => {
            admin.delete_account(DeleteAccountRequest { address: address.clone(), purge }).await.map_err(status)?;
            if purge {
                writeln!(out, "mailbox {address} and all its mail deleted")?;
            } else {
                writeln!(out, "mailbox {address} suspended; its mail is kept (--purge deletes it)")?;
            }
        }
    }
    Ok(())
}

async fn alias(admin: &mut AdminClient<Channel>, command: AliasCommand, out: &mut impl std::io::Write) -> Result<()> {
    match command {
        AliasCommand::Add { alias, target } => {
            let alias = admin.add_alias(AddAliasRequest { address: alias, target }).await.map_err(status)?.into_inner();
            writeln!(out, "{} delivers to {}", alias.address, alias.target)?;
        }
        AliasCommand::Remove { alias } => {
            admin.remove_alias(RemoveAliasRequest { address: alias.clone() }).await.map_err(status)?;
            writeln!(out, "alias {alias} removed")?;
        }
        AliasCommand::List { domain } => {
            let aliases = admin.list_aliases(ListAliasesRequest { domain }).await.map_err(status)?.into_inner().aliases;
            table(out, &["ALIAS", "TARGET"], aliases.into_iter().map(|a| vec![a.address, a.target]))?;
        }
    }
    Ok(())
}

fn or_dash(text: &str) -> String {
    if text.is_empty() { "-".into() } else { text.into() }
}

/// A quota for display: "unlimited" for 0.
fn quota(limit: u64, format: impl Fn(u64) -> String) -> String {
    if limit == 0 { "unlimited".into() } else { format(limit) }
}

/// Octets in binary units, one decimal: "512 B", "1.5 KiB", "1.0 GiB".
pub fn format_size(octets: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if octets < 1024 {
        return format!("{octets} B");
    }
    let mut value = octets as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Left-aligned columns, like `kubectl get`.
fn table(out: &mut impl std::io::Write, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<()> {
    let rows: Vec<Vec<String>> = rows.collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("   ").trim_end().to_string()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(1 << 30), "1.0 GiB");
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        table(&mut out, &["A", "BB"], vec![vec!["long value".to_string(), "x".to_string()]].into_iter()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A            BB\nlong value   x\n");
    }
}
