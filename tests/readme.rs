//! The README's quick start is `examples/quickstart.rs`, verbatim, so the build keeps it
//! compiling as shown; every command the README's command list names exists.

/// The first Rust block after `## Quick start`.
fn quick_start(readme: &str) -> &str {
    let section = readme
        .split_once("## Quick start")
        .expect("a `## Quick start` section")
        .1;
    let block = section.split_once("```rust\n").expect("a rust block").1;
    block.split_once("```").expect("the block's end").0
}

#[test]
fn the_quick_start_is_the_example() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart.rs"
    ))
    .unwrap();
    assert_eq!(
        quick_start(&readme),
        example,
        "README.md's quick start and examples/quickstart.rs differ: copy the example into it"
    );
}

#[test]
fn no_readme_line_is_over_100_columns() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let long: Vec<&str> = readme
        .lines()
        .filter(|line| line.chars().count() > 100)
        .collect();
    assert!(long.is_empty(), "lines over 100 columns: {long:#?}");
}

/// The README names every command of the command line.
#[cfg(feature = "cli")]
#[test]
fn the_command_list_is_complete() {
    use clap::Subcommand;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands = etcd_config::cli::Command::augment_subcommands(clap::Command::new("admin"));
    let missing: Vec<String> = commands
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "commands the README does not name: {missing:?}"
    );
}
