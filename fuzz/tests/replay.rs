//! The fuzzers' seeds and every input they found a fault with (`regressions/`), run through
//! the same harnesses on every test run: a fixed fault stays fixed, and the seeds still reach
//! the deep states a fuzzer starts from.

use std::path::{Path, PathBuf};

use kubemail_fuzz::wire::Response;
use kubemail_fuzz::{imap, mime, smtp};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut inputs = Vec::new();
    for folder in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_file() && path.file_name().is_some_and(|name| name != ".gitkeep") {
                let input = std::fs::read(&path).expect("read input");
                inputs.push((path, input));
            }
        }
    }
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs for {target}");
    inputs
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target).join(name)).expect("seed")
}

#[test]
fn smtp_sessions_replay_cleanly() {
    for (path, input) in inputs("smtp_session") {
        eprintln!("replaying {}", path.display());
        smtp::session(&input);
    }
    // The seeds reach a delivered message over MX and over authenticated submission.
    let mx = smtp::session(&seed("smtp_session", "mx-transaction"));
    assert_eq!(mx, [220, 250, 250, 250, 250, 354, 250, 221]);
    let submission = smtp::session(&seed("smtp_session", "submission-auth-plain-bdat"));
    assert_eq!(submission, [220, 250, 235, 250, 250, 250, 250, 221]);
}

#[test]
fn imap_sessions_replay_cleanly() {
    for (path, input) in inputs("imap_session") {
        eprintln!("replaying {}", path.display());
        imap::session(&input);
    }
    // The seed logs in, selects and fetches every item kind without a NO or BAD.
    let responses = imap::session(&seed("imap_session", "read-mail"));
    let statuses: Vec<&str> = responses
        .iter()
        .filter_map(|response| match response {
            Response::Tagged { status, .. } => Some(status.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, ["OK"; 10], "{responses:?}");
}

#[test]
fn mime_structures_replay_cleanly() {
    for (path, input) in inputs("mime_structure") {
        eprintln!("replaying {}", path.display());
        mime::structure(&input);
    }
}
