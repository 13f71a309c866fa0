//! Writes the files generated from the code — the CRDs into `crds/`, the operator's ClusterRole
//! into `operator/rbac/` — or, with `--stdout`, prints them as one YAML stream.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let files = kubemail_operator::generated::files()?;
    if std::env::args().any(|arg| arg == "--stdout") {
        for (_, yaml) in files {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (path, yaml) in files {
        let path = root.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, yaml)?;
    }
    Ok(())
}
