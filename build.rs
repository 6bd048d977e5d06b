//! The generated protobuf code in `src/proto/` is checked in, so building this crate compiles
//! no code generator. `proto/` stays the source of truth: with the cargo feature
//! `regenerate-proto`, this script compiles etcd's v3 wire definitions again (with `protox`,
//! in pure Rust: no `protoc`) and rewrites `src/proto/`. CI does that and fails if the result
//! differs from what is checked in. Only client stubs are generated (the crate never serves
//! etcd's API), and they stay crate-private.

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
    hide_client_stubs("src/proto/etcdserverpb.rs")?;
    Ok(())
}

/// The crate drives the generated client stubs itself and offers no channel to drive them with:
/// they stay crate-private, and only the message types are public (`etcd_config::proto`).
#[cfg(feature = "regenerate-proto")]
fn hide_client_stubs(path: &str) -> std::io::Result<()> {
    let generated = std::fs::read_to_string(path)?;
    let mut hidden = String::with_capacity(generated.len() + 64);
    for line in generated.split_inclusive('\n') {
        match line.strip_prefix("pub mod ") {
            Some(rest) if rest.trim_end().ends_with("_client {") => {
                hidden.push_str("pub(crate) mod ");
                hidden.push_str(rest);
            }
            _ => hidden.push_str(line),
        }
    }
    std::fs::write(path, hidden)
}
