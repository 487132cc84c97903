fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // IPC chunks as `bytes::Bytes`: sliced and passed on without copies.
        .bytes(".")
        // The descriptor set feeds server reflection (`grpcurl ... list`).
        .file_descriptor_set_path(out_dir.join("polarway_descriptor.bin"))
        .compile_protos(&["polarway/v1/polarway.proto"], &["."])?;
    println!("cargo:rerun-if-changed=polarway/v1/polarway.proto");
    Ok(())
}
