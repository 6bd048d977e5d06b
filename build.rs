//! Compiles etcd's v3 wire definitions in `proto/` into Rust.
//!
//! `protox` parses the `.proto` files in pure Rust, so building this crate needs no `protoc`.
//! Only client stubs are generated: the crate never serves etcd's API.

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        .compile_fds(descriptors)?;
    Ok(())
}
