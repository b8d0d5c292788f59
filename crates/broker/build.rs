//! Compiles `proto-schemas/broker/*.proto` with protox (pure Rust, no `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Relative to this package, so that checkouts sharing a target directory
    // (a CI clone beside a working tree) each watch their own copy: cargo
    // reuses one build-script run for all of them, and an absolute path
    // would watch only the checkout that ran it last.
    const PROTO: &str = "../../proto-schemas/broker/hookline.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas/broker");
    let proto = root.join("hookline.proto");
    let descriptors = protox::compile([&proto], [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
