//! Writes the CustomResourceDefinitions as YAML, one file per resource, into the directory
//! given (the repository's `crds/`), or all of them to standard output.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    match std::env::args_os().nth(1).map(PathBuf::from) {
        Some(dir) => {
            for (file, yaml) in kubemail_operator::crd::files()? {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
        None => {
            for (_, yaml) in kubemail_operator::crd::files()? {
                print!("---\n{yaml}");
            }
        }
    }
    Ok(())
}
