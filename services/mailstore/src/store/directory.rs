//! Domains, accounts and aliases: the admin operations, recipient resolution for SMTP and
//! authentication.

use kubemail_proto::admin::{Account, Alias, Domain};
use kubemail_proto::mailstore::resolve_recipient_response::{Outcome, QuotaState};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Store, get_bool, get_u64, to_i64};
use crate::validate::{self, INBOX};
use crate::{Error, Result, password};

/// Folders every new account starts with, with their RFC 6154 special use, so mail clients
/// find Sent, Drafts and Trash without creating their own.
const DEFAULT_MAILBOXES: &[(&str, &str)] =
    &[(INBOX, ""), ("Drafts", "Drafts"), ("Sent", "Sent"), ("Junk", "Junk"), ("Trash", "Trash")];

/// What an SMTP recipient resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub outcome: Outcome,
    pub account_id: i64,
    pub canonical_address: String,
    pub quota: QuotaState,
}

/// Changes to an account; `None` leaves a field as it is (or at the domain default for a new
/// account).
#[derive(Clone, Debug, Default)]
pub struct AccountUpdate {
    pub password: Option<String>,
    pub quota_storage: Option<u64>,
    pub quota_messages: Option<u64>,
    pub suspended: Option<bool>,
}

/// The account an address reaches directly or through an alias.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub account_id: i64,
    pub address: String,
    pub suspended: bool,
}

const ACCOUNT_COLUMNS: &str = "id, address, suspended, quota_storage, quota_messages, used_storage, used_messages";

/// Finds the account `address` (already normalised) delivers to: the account itself, an
/// alias, the base address of a `user+tag` subaddress, or the domain's catch-all.
/// `Ok(None)` with `domain_served` tells an unknown user from a foreign domain.
pub(crate) async fn find_target(conn: &mut AnyConnection, address: &str, domain: &str) -> Result<Lookup> {
    if let Some(target) = direct_target(conn, address).await? {
        return Ok(Lookup::Found(target));
    }
    let (local, _) = address.rsplit_once('@').unwrap_or((address, ""));
    // RFC 5233 subaddressing: alice+lists@ reaches alice@ unless alice+lists@ exists itself.
    if let Some((base, _tag)) = local.split_once('+')
        && !base.is_empty()
        && let Some(target) = direct_target(conn, &format!("{base}@{domain}")).await?
    {
        return Ok(Lookup::Found(target));
    }
    let catch_all: Option<String> = sqlx::query_scalar("SELECT catch_all FROM domains WHERE name = $1")
        .bind(domain)
        .fetch_optional(&mut *conn)
        .await?;
    match catch_all {
        None => Ok(Lookup::NotLocal),
        Some(catch_all) if catch_all.is_empty() => Ok(Lookup::Unknown),
        Some(catch_all) => Ok(direct_target(conn, &catch_all).await?.map_or(Lookup::Unknown, Lookup::Found)),
    }
}

pub(crate) enum Lookup {
    Found(Target),
    Unknown,
    NotLocal,
}

async fn direct_target(conn: &mut AnyConnection, address: &str) -> Result<Option<Target>> {
    let row = sqlx::query(
        "SELECT id, address, suspended FROM accounts WHERE address = $1 \
         UNION ALL \
         SELECT a.id, a.address, a.suspended FROM aliases l JOIN accounts a ON a.id = l.account_id \
         WHERE l.address = $1",
    )
    .bind(address)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        Ok(Target {
            account_id: row.try_get("id")?,
            address: row.try_get("address")?,
            suspended: get_bool(&row, "suspended")?,
        })
    })
    .transpose()
}

impl Store {
    // ---------- domains ----------

    pub async fn upsert_domain(
        &self,
        name: &str,
        catch_all: &str,
        default_quota_storage: u64,
        default_quota_messages: u64,
    ) -> Result<Domain> {
        let name = validate::domain(name)?;
        let catch_all = if catch_all.is_empty() { String::new() } else { validate::address(catch_all)?.0 };
        sqlx::query(
            "INSERT INTO domains (name, catch_all, default_quota_storage, default_quota_messages) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET catch_all = excluded.catch_all, \
             default_quota_storage = excluded.default_quota_storage, \
             default_quota_messages = excluded.default_quota_messages",
        )
        .bind(&name)
        .bind(&catch_all)
        .bind(to_i64(default_quota_storage, "storage quota")?)
        .bind(to_i64(default_quota_messages, "message quota")?)
        .execute(self.db.writer())
        .await?;
        self.domain(&name).await
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        let row = sqlx::query(
            "SELECT d.name, d.catch_all, d.default_quota_storage, d.default_quota_messages, \
             (SELECT COUNT(*) FROM accounts a WHERE a.domain_id = d.id) AS accounts \
             FROM domains d WHERE d.name = $1",
        )
        .bind(name)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| Error::not_found(format!("domain {name} is not served here")))?;
        domain_from_row(&row)
    }

    pub async fn list_domains(&self) -> Result<Vec<Domain>> {
        let rows = sqlx::query(
            "SELECT d.name, d.catch_all, d.default_quota_storage, d.default_quota_messages, \
             (SELECT COUNT(*) FROM accounts a WHERE a.domain_id = d.id) AS accounts \
             FROM domains d ORDER BY d.name",
        )
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(domain_from_row).collect()
    }

    /// Removes a domain; with `force` also its accounts, aliases and all their mail.
    pub async fn delete_domain(&self, name: &str, force: bool) -> Result<()> {
        let name = validate::domain(name)?;
        let mut tx = self.db.write().await?;
        let domain_id: i64 = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("domain {name} is not served here")))?;
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts WHERE domain_id = $1")
            .bind(domain_id)
            .fetch_one(&mut *tx)
            .await?;
        if accounts > 0 && !force {
            return Err(Error::FailedPrecondition(format!(
                "domain {name} still has {accounts} account(s); remove them first or force"
            )));
        }
        let hashes = account_blob_hashes(&mut tx, "a.domain_id = $1", domain_id).await?;
        sqlx::query(
            "DELETE FROM aliases WHERE domain_id = $1 OR account_id IN (SELECT id FROM accounts WHERE domain_id = $1)",
        )
        .bind(domain_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM accounts WHERE domain_id = $1").bind(domain_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM domains WHERE id = $1").bind(domain_id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.collect_blobs(&hashes).await;
        Ok(())
    }

    // ---------- accounts ----------

    /// Creates or updates the account `address`.
    pub async fn upsert_account(&self, address: &str, update: AccountUpdate) -> Result<Account> {
        let (address, _, domain) = validate::address(address)?;
        let password_hash = match &update.password {
            Some(password) if !password.is_empty() => Some(password::hash(password).await?),
            _ => None,
        };
        let quota_storage = update.quota_storage.map(|q| to_i64(q, "storage quota")).transpose()?;
        let quota_messages = update.quota_messages.map(|q| to_i64(q, "message quota")).transpose()?;

        let mut tx = self.db.write().await?;
        let domain_row =
            sqlx::query("SELECT id, default_quota_storage, default_quota_messages FROM domains WHERE name = $1")
                .bind(&domain)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| Error::not_found(format!("domain {domain} is not served here; add it first")))?;
        let domain_id: i64 = domain_row.try_get("id")?;
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
            .bind(&address)
            .fetch_optional(&mut *tx)
            .await?;
        let changed = existing.filter(|_| password_hash.is_some() || update.suspended.is_some());
        match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE accounts SET password_hash = COALESCE($1, password_hash), \
                     quota_storage = COALESCE($2, quota_storage), quota_messages = COALESCE($3, quota_messages), \
                     suspended = COALESCE($4, suspended) WHERE id = $5",
                )
                .bind(password_hash)
                .bind(quota_storage)
                .bind(quota_messages)
                .bind(update.suspended.map(i64::from))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                let password_hash = password_hash
                    .ok_or_else(|| Error::invalid(format!("a new account ({address}) needs a password")))?;
                let is_alias: Option<String> = sqlx::query_scalar("SELECT address FROM aliases WHERE address = $1")
                    .bind(&address)
                    .fetch_optional(&mut *tx)
                    .await?;
                if is_alias.is_some() {
                    return Err(Error::AlreadyExists(format!("{address} is an alias; remove the alias first")));
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO accounts (domain_id, address, password_hash, suspended, quota_storage, quota_messages) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(domain_id)
                .bind(&address)
                .bind(password_hash)
                .bind(i64::from(update.suspended.unwrap_or(false)))
                .bind(quota_storage.unwrap_or(domain_row.try_get("default_quota_storage")?))
                .bind(quota_messages.unwrap_or(domain_row.try_get("default_quota_messages")?))
                .fetch_one(&mut *tx)
                .await?;
                for (name, special_use) in DEFAULT_MAILBOXES {
                    self.insert_mailbox(&mut tx, id, name, special_use).await?;
                    super::mailboxes::subscribe(&mut tx, id, name).await?;
                }
            }
        }
        tx.commit().await?;
        if let Some(account_id) = changed {
            self.events.account_changed(account_id).await;
        }
        self.account(&address).await
    }

    /// Changes an existing account; NOT_FOUND when there is none (never creates one).
    pub async fn update_account(&self, address: &str, update: AccountUpdate) -> Result<Account> {
        self.account(address).await?;
        self.upsert_account(address, update).await
    }

    /// The account `address` with usage and aliases.
    pub async fn account(&self, address: &str) -> Result<Account> {
        let (address, _, _) = validate::address(address)?;
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE address = $1")))
                .bind(&address)
                .fetch_optional(self.db.reader())
                .await?
                .ok_or_else(|| Error::not_found(format!("no account {address}")))?;
        let mut account = account_from_row(&row)?;
        account.aliases = sqlx::query_scalar("SELECT address FROM aliases WHERE account_id = $1 ORDER BY address")
            .bind(account.id)
            .fetch_all(self.db.reader())
            .await?;
        Ok(account)
    }

    /// Accounts of one domain (or all), ordered by address.
    pub async fn list_accounts(&self, domain: &str) -> Result<Vec<Account>> {
        let rows = if domain.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY address")))
                .fetch_all(self.db.reader())
                .await?
        } else {
            let domain = validate::domain(domain)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts \
                 WHERE domain_id = (SELECT id FROM domains WHERE name = $1) ORDER BY address"
            )))
            .bind(domain)
            .fetch_all(self.db.reader())
            .await?
        };
        let mut accounts: Vec<Account> = rows.iter().map(account_from_row).collect::<Result<_>>()?;
        let aliases =
            sqlx::query("SELECT address, account_id FROM aliases ORDER BY address").fetch_all(self.db.reader()).await?;
        for row in aliases {
            let account_id: i64 = row.try_get("account_id")?;
            if let Some(account) = accounts.iter_mut().find(|a| a.id == account_id) {
                account.aliases.push(row.try_get("address")?);
            }
        }
        Ok(accounts)
    }

    pub async fn set_password(&self, address: &str, password: &str) -> Result<()> {
        let (address, _, _) = validate::address(address)?;
        let hash = password::hash(password).await?;
        let account_id: i64 =
            sqlx::query_scalar("UPDATE accounts SET password_hash = $1 WHERE address = $2 RETURNING id")
                .bind(hash)
                .bind(&address)
                .fetch_optional(self.db.writer())
                .await?
                .ok_or_else(|| Error::not_found(format!("no account {address}")))?;
        self.events.account_changed(account_id).await;
        Ok(())
    }

    /// Deletes the account and all its mail (`purge`), or suspends it and keeps its mail.
    pub async fn delete_account(&self, address: &str, purge: bool) -> Result<()> {
        let (address, _, _) = validate::address(address)?;
        if !purge {
            self.update_account(&address, AccountUpdate { suspended: Some(true), ..Default::default() }).await?;
            return Ok(());
        }
        let mut tx = self.db.write().await?;
        let account_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
            .bind(&address)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no account {address}")))?;
        let hashes = account_blob_hashes(&mut tx, "a.id = $1", account_id).await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1").bind(account_id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.events.account_changed(account_id).await;
        self.collect_blobs(&hashes).await;
        Ok(())
    }

    // ---------- aliases ----------

    pub async fn add_alias(&self, alias: &str, target: &str) -> Result<Alias> {
        let (alias, _, domain) = validate::address(alias)?;
        let (target, _, _) = validate::address(target)?;
        let mut tx = self.db.write().await?;
        let domain_id: i64 = sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
            .bind(&domain)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("domain {domain} is not served here")))?;
        let account_id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
            .bind(&target)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("alias target {target} is not an account")))?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
            .bind(&alias)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(Error::AlreadyExists(format!("{alias} is an account")));
        }
        let existing: Option<i64> = sqlx::query_scalar("SELECT account_id FROM aliases WHERE address = $1")
            .bind(&alias)
            .fetch_optional(&mut *tx)
            .await?;
        match existing {
            Some(id) if id == account_id => {}
            Some(_) => return Err(Error::AlreadyExists(format!("{alias} is already an alias of another account"))),
            None => {
                sqlx::query("INSERT INTO aliases (address, domain_id, account_id) VALUES ($1, $2, $3)")
                    .bind(&alias)
                    .bind(domain_id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Alias { address: alias, target })
    }

    pub async fn remove_alias(&self, alias: &str) -> Result<()> {
        let (alias, _, _) = validate::address(alias)?;
        let removed =
            sqlx::query("DELETE FROM aliases WHERE address = $1").bind(&alias).execute(self.db.writer()).await?;
        if removed.rows_affected() == 0 {
            return Err(Error::not_found(format!("no alias {alias}")));
        }
        Ok(())
    }

    pub async fn list_aliases(&self, domain: &str) -> Result<Vec<Alias>> {
        let domain = if domain.is_empty() { String::new() } else { validate::domain(domain)? };
        let rows = sqlx::query(
            "SELECT l.address, a.address AS target FROM aliases l JOIN accounts a ON a.id = l.account_id \
             JOIN domains d ON d.id = l.domain_id WHERE $1 = '' OR d.name = $1 ORDER BY l.address",
        )
        .bind(domain)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter().map(|row| Ok(Alias { address: row.try_get("address")?, target: row.try_get("target")? })).collect()
    }

    // ---------- SMTP ----------

    /// Resolves an SMTP recipient and checks whether a message of `size_hint` octets fits.
    pub async fn resolve_recipient(&self, address: &str, size_hint: u64) -> Result<Resolution> {
        let (address, _, domain) = validate::address(address)?;
        let mut conn = self.db.reader().acquire().await?;
        let target = match find_target(&mut conn, &address, &domain).await? {
            Lookup::Found(target) => target,
            Lookup::Unknown => return Ok(Resolution::without_account(Outcome::UnknownRecipient)),
            Lookup::NotLocal => return Ok(Resolution::without_account(Outcome::NotLocal)),
        };
        if target.suspended {
            return Ok(Resolution::without_account(Outcome::Disabled));
        }
        let row = sqlx::query(
            "SELECT quota_storage, quota_messages, used_storage, used_messages FROM accounts WHERE id = $1",
        )
        .bind(target.account_id)
        .fetch_one(&mut *conn)
        .await?;
        let (quota_storage, quota_messages) = (get_u64(&row, "quota_storage")?, get_u64(&row, "quota_messages")?);
        let (used_storage, used_messages) = (get_u64(&row, "used_storage")?, get_u64(&row, "used_messages")?);
        let quota = if quota_storage > 0 && size_hint > quota_storage {
            QuotaState::NeverFits
        } else if (quota_storage > 0 && used_storage + size_hint.max(1) > quota_storage)
            || (quota_messages > 0 && used_messages >= quota_messages)
        {
            QuotaState::Full
        } else {
            QuotaState::Fits
        };
        Ok(Resolution {
            outcome: Outcome::Local,
            account_id: target.account_id,
            canonical_address: target.address,
            quota,
        })
    }

    /// Checks a password; answers the account with the addresses it may send as.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<(i64, String, Vec<String>)> {
        let Ok((address, _, _)) = validate::address(username) else {
            password::verify(password, password::decoy_hash()).await;
            return Err(Error::Unauthenticated);
        };
        let row = sqlx::query("SELECT id, password_hash, suspended FROM accounts WHERE address = $1")
            .bind(&address)
            .fetch_optional(self.db.reader())
            .await?;
        let Some(row) = row else {
            password::verify(password, password::decoy_hash()).await;
            return Err(Error::Unauthenticated);
        };
        let stored: String = row.try_get("password_hash")?;
        if !password::verify(password, &stored).await {
            return Err(Error::Unauthenticated);
        }
        if get_bool(&row, "suspended")? {
            return Err(Error::PermissionDenied(format!("account {address} is suspended")));
        }
        let account_id: i64 = row.try_get("id")?;
        let mut senders: Vec<String> =
            sqlx::query_scalar("SELECT address FROM aliases WHERE account_id = $1 ORDER BY address")
                .bind(account_id)
                .fetch_all(self.db.reader())
                .await?;
        senders.insert(0, address.clone());
        Ok((account_id, address, senders))
    }
}

impl Resolution {
    fn without_account(outcome: Outcome) -> Self {
        Resolution { outcome, account_id: 0, canonical_address: String::new(), quota: QuotaState::Unspecified }
    }
}

fn domain_from_row(row: &AnyRow) -> Result<Domain> {
    Ok(Domain {
        name: row.try_get("name")?,
        catch_all: row.try_get("catch_all")?,
        default_quota_storage: get_u64(row, "default_quota_storage")?,
        default_quota_messages: get_u64(row, "default_quota_messages")?,
        accounts: u32::try_from(get_u64(row, "accounts")?).unwrap_or(u32::MAX),
    })
}

fn account_from_row(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        id: row.try_get("id")?,
        address: row.try_get("address")?,
        suspended: get_bool(row, "suspended")?,
        quota_storage: get_u64(row, "quota_storage")?,
        quota_messages: get_u64(row, "quota_messages")?,
        used_storage: get_u64(row, "used_storage")?,
        used_messages: get_u64(row, "used_messages")?,
        aliases: Vec::new(),
    })
}

/// The distinct body hashes of the accounts matching `condition` (on `accounts a`), read
/// before the accounts are deleted so their bodies can be collected afterwards.
async fn account_blob_hashes(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    condition: &'static str,
    id: i64,
) -> Result<Vec<String>> {
    let sql =
        format!("SELECT DISTINCT m.blob_hash FROM messages m JOIN accounts a ON a.id = m.account_id WHERE {condition}");
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(&mut **tx).await?)
}
