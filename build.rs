//! The generated protobuf code in `src/proto/` is checked in, so building this crate compiles
//! no code generator. `proto/` stays the source of truth: with the cargo feature
//! `regenerate-proto`, this script compiles etcd's v3 wire definitions again (with `protox`,
//! in pure Rust: no `protoc`) and rewrites `src/proto/`. CI does that and fails if the result
//! differs from what is checked in. Only client stubs are generated: the crate never serves
//! etcd's API.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "regenerate-proto")]
    regenerate()?;
    Ok(())
}

#[cfg(feature = "regenerate-proto")]
fn regenerate() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: &[&str] = &[
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
    ];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(FILES, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .out_dir("src/proto")
        .compile_fds(descriptors)?;
    Ok(())
}
