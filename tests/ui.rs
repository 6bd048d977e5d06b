//! Compile errors of `#[derive(EtcdConfig)]`: one case per diagnostic in `tests/ui/`, each with
//! the exact message and the token it points at (`.stderr`). No case shows a follow-on error.

#[test]
fn diagnostics() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
