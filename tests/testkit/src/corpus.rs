//! The messages of every MIME structure the tests know: the hand-written corpus of
//! kubemail-message (`services/message/corpus/`: alternatives, attachments, forwarded messages,
//! groups, raw UTF-8, broken multiparts), and the MIME fuzzer's seeds and the inputs it found
//! crashes with (`fuzz/seeds/mime_structure/`, `fuzz/regressions/mime_structure/`).

use std::path::Path;

/// Each message of the corpora with its file name, in name order within each directory.
pub fn mime_corpus() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The fuzzer's inputs start with four octets that pick a mode and a part path.
    let directories =
        [("services/message/corpus", 0), ("fuzz/seeds/mime_structure", 4), ("fuzz/regressions/mime_structure", 4)];
    let mut messages = Vec::new();
    for (directory, skip) in directories {
        let directory = root.join(directory);
        let mut paths: Vec<_> = std::fs::read_dir(&directory)
            .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let octets = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            messages.push((name, octets.get(skip..).unwrap_or_default().to_vec()));
        }
    }
    messages
}
