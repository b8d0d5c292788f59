//! Compiles `proto-schemas/broker/*.proto` with protox (pure Rust, no `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas/broker");
    let proto = root.join("hookline.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
