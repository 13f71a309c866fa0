//! Chaos with nothing lost: messages go in through two SMTP ingresses while the delivery
//! queue, the mailstore and an IMAP frontend are SIGKILLed and started again at random moments
//! and the NATS server is restarted once (an orderly restart: a single NATS server that crashes
//! may lose what it acknowledged last, which is what three replicas are for). At the end every message that got `250` is in its
//! mailbox exactly once, none that got a `4xx` is, and the IMAP view (counts, UIDs, quota
//! usage) agrees with the mailstore.
//!
//! `KUBEMAIL_CHAOS_MESSAGES` sets the size (2,000 here; the benchmark runs 50,000).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::distributed::Distributed;
use common::{admin, inbox, ok, python, python_in_background};
use kubemail_proto::admin::GetAccountRequest;
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_runtime::identity::Role;

const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
/// Kills at least, each victim in turn: during the sending, and on into the delivering.
const MIN_KILLS: usize = 9;
const PASSWORD: &str = "chaos password";
/// How long sending or storing may make no progress at all before the run counts as stuck; a
/// deadline on the whole run would have to grow with the message count and the machine's load.
const STALL: Duration = Duration::from_secs(120);

/// Sends `count` messages, alternating between the two ingresses (one connection each, made
/// again when it breaks); prints one line per message: `<n> <code> <seconds taken>` (code 0:
/// the connection broke before an answer).
const SENDER: &str = r#"
import time
mx = [address(sys.argv[1]), address(sys.argv[2])]
users = sys.argv[3].split(",")
count = int(sys.argv[4])
pause = float(sys.argv[5])
connections = [None, None]
for n in range(count):
    which = n % 2
    to = f"{users[n % len(users)]}@example.org"
    message = f"From: sender@example.net\r\nTo: {to}\r\nSubject: chaos {n}\r\nMessage-ID: <chaos-{n}@example.net>\r\n\r\nMessage {n}.\r\n"
    code = 0
    started = time.monotonic()
    try:
        if connections[which] is None:
            connections[which] = smtplib.SMTP(*mx[which], timeout=30)
            connections[which].ehlo("sender.example.net")
        connections[which].sendmail("sender@example.net", [to], message)
        code = 250
    except smtplib.SMTPRecipientsRefused as refused:
        code = list(refused.recipients.values())[0][0]
    except smtplib.SMTPResponseException as error:
        code = error.smtp_code
    except (smtplib.SMTPServerDisconnected, OSError):
        connections[which] = None
    if code and code >= 400 and connections[which] is not None:
        try:
            connections[which].rset()
        except Exception:
            connections[which] = None
    print(n, code, round(time.monotonic() - started, 3), flush=True)
    time.sleep(pause)
"#;

/// Each user's INBOX over IMAP: message count, UIDs strictly ascending, and the quota root's
/// storage usage in KiB.
const IMAP_VIEW: &str = r#"
import re
host, port = address(sys.argv[1])
for user in sys.argv[2].split(","):
    m = imaplib.IMAP4(host, port, timeout=60)
    m.starttls(ssl_context=context)
    m.login(f"{user}@example.org", sys.argv[3])
    typ, data = m.select("INBOX", readonly=True)
    exists = int(data[0])
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in data[0].split()]
    typ, data = m.getquotaroot("INBOX")
    storage = re.search(rb"STORAGE (\d+) ", b" ".join(d for d in data[1] if d))
    print(user, exists, len(uids), int(uids == sorted(set(uids))), storage.group(1).decode() if storage else "-")
    m.logout()
"#;

#[test]
fn nothing_acknowledged_is_lost_or_doubled_while_services_die() {
    let count: usize = std::env::var("KUBEMAIL_CHAOS_MESSAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000);
    // A killed worker's leases run out in seconds, and a delivery the mailstore could not take
    // is tried again in seconds, not the default minute: within the test's patience.
    let mut platform = Distributed::start(&["--lease", "5s", "--retry-schedule", "2s,5s"]);
    ok(admin(&platform.grpc, &["domain", "add", "example.org"], None));
    for user in USERS {
        let address = format!("{user}@example.org");
        ok(admin(&platform.grpc, &["mailbox", "add", &address, "--password-stdin"], Some(&format!("{PASSWORD}\n"))));
        // A storage quota, so IMAP reports the usage it counts against.
        ok(admin(&platform.grpc, &["mailbox", "quota", &address, "--storage", "1GiB", "--messages", "0"], None));
    }
    let services = platform.services();
    let victims: Vec<usize> = ["delivery-queue", "mailstore", "imap-frontend"]
        .iter()
        .map(|name| services.iter().position(|s| s == name).unwrap())
        .collect();

    let users = USERS.join(",");
    let count_arg = count.to_string();
    // Paced, so the sending spans several kills however fast the machine.
    let (mut sender, lines) =
        python_in_background(SENDER, &[&platform.smtp[0].mx, &platform.smtp[1].mx, &users, &count_arg, "0.003"]);
    let mut answers: BTreeMap<usize, u16> = BTreeMap::new();
    let mut slowest = (0.0f64, 0usize);
    let mut kills = 0;
    let mut nats_restarted = false;
    let started = Instant::now();
    let mut random = started.elapsed().as_nanos() as u64 | 1;
    let mut next_kill = Instant::now() + Duration::from_millis(300);
    let mut last_answer = Instant::now();
    while answers.len() < count || kills < MIN_KILLS {
        assert!(last_answer.elapsed() < STALL, "the sender stalled at {} of {count}", answers.len());
        while let Ok(line) = lines.try_recv() {
            last_answer = Instant::now();
            let fields: Vec<&str> = line.split(' ').collect();
            let (n, code, seconds): (usize, u16, f64) =
                (fields[0].parse().unwrap(), fields[1].parse().unwrap(), fields[2].parse().unwrap());
            answers.insert(n, code);
            if seconds > slowest.0 {
                slowest = (seconds, n);
            }
        }
        if Instant::now() >= next_kill {
            // xorshift: a different schedule each run, no dependency for it.
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            if !nats_restarted && answers.len() > count / 2 {
                platform.nats().restart_gracefully();
                nats_restarted = true;
            } else {
                let victim = victims[kills % victims.len()];
                platform.kill(victim);
                std::thread::sleep(Duration::from_millis(100 + random % 300));
                platform.restart(victim);
                kills += 1;
            }
            // Often enough to hit every stage of many messages, seldom enough for most to pass.
            next_kill = Instant::now() + Duration::from_millis(600 + random % 900);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(sender.wait().unwrap().success());
    platform.wait_all_ready();

    let accepted: BTreeSet<usize> = answers.iter().filter(|(_, code)| **code == 250).map(|(n, _)| *n).collect();
    let refused: BTreeSet<usize> =
        answers.iter().filter(|(_, code)| (400..500).contains(*code)).map(|(n, _)| *n).collect();
    let cut_off = answers.values().filter(|code| **code == 0).count();
    println!(
        "{count} sent in {:.0?}: {} accepted, {} refused for now (4xx), {cut_off} cut off; {kills} kills, NATS \
         restarted once; the slowest answer took {:.1} s (message {})",
        started.elapsed(),
        accepted.len(),
        refused.len(),
        slowest.0,
        slowest.1
    );
    assert!(answers.values().all(|code| [0, 250].contains(code) || (400..500).contains(code)), "{answers:?}");

    // Every accepted message arrives: wait (cheaply, on the accounts' counts) for the queue to
    // drain, then read every mailbox once.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let accounts = || -> BTreeMap<&str, (u64, u64)> {
        runtime.block_on(async {
            let mut admin = AdminClient::new(platform.grpc.channel(Role::Admin).await);
            let mut accounts = BTreeMap::new();
            for user in USERS {
                let request = GetAccountRequest { address: format!("{user}@example.org") };
                let account = admin.get_account(request).await.unwrap().into_inner();
                accounts.insert(user, (account.used_messages, account.used_storage));
            }
            accounts
        })
    };
    let (mut stored, mut last_progress) = (0, Instant::now());
    while stored < accepted.len() as u64 && last_progress.elapsed() < STALL {
        std::thread::sleep(Duration::from_millis(500));
        let now_stored = accounts().values().map(|(messages, _)| messages).sum::<u64>();
        if now_stored > stored {
            (stored, last_progress) = (now_stored, Instant::now());
        }
    }
    let mut delivered: BTreeMap<usize, usize> = BTreeMap::new();
    for user in USERS {
        for message in inbox(&platform.grpc, &format!("{user}@example.org"), PASSWORD) {
            let n = message.split("Subject: chaos ").nth(1).and_then(|rest| rest.split('\r').next());
            *delivered.entry(n.unwrap().trim().parse().unwrap()).or_default() += 1;
        }
    }
    let missing: Vec<_> = accepted.iter().filter(|n| !delivered.contains_key(n)).collect();
    assert!(missing.is_empty(), "{} accepted messages never arrived: {missing:?}", missing.len());
    let doubled: Vec<_> = delivered.iter().filter(|(_, copies)| **copies > 1).collect();
    assert!(doubled.is_empty(), "delivered more than once: {doubled:?}");
    let refused_but_delivered: Vec<_> = refused.iter().filter(|n| delivered.contains_key(n)).collect();
    assert!(refused_but_delivered.is_empty(), "refused with 4xx yet delivered: {refused_but_delivered:?}");
    println!("{} delivered, each once", delivered.len());

    // The IMAP view agrees with the mailstore.
    let accounts = accounts();
    for line in python(IMAP_VIEW, &[&platform.imap[0].imap, &users, PASSWORD]) {
        let fields: Vec<&str> = line.split(' ').collect();
        let (messages, storage) = accounts[fields[0]];
        assert_eq!(fields[1].parse::<u64>().unwrap(), messages, "{line}: EXISTS against the mailstore's count");
        assert_eq!(fields[2].parse::<u64>().unwrap(), messages, "{line}: UIDs against the count");
        assert_eq!(fields[3], "1", "{line}: UIDs ascending and unique");
        assert_eq!(fields[4].parse::<u64>().unwrap(), storage.div_ceil(1024), "{line}: quota usage in KiB");
    }
}
