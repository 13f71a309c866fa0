//! Compiles the .proto files with protox (pure Rust), so building needs no `protoc`.

const PROTOS: &[&str] = &[
    "kubemail/mailstore/v1/mailstore.proto",
    "kubemail/admin/v1/admin.proto",
    "kubemail/queue/v1/queue.proto",
    "kubemail/events/v1/events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTOS, ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
