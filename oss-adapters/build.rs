//! Generates the gRPC service code from proto/tollgate.proto with the protoc binary that
//! ships inside the protoc-bin-vendored crate (no system protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tollgate.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(config, &["proto/tollgate.proto"], &["proto"])?;
    Ok(())
}
