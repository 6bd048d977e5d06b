//! Pieces of `Error` messages shared by several variants.

use super::Problem;

/// ` waiting for endpoint E`, when the request got as far as an endpoint.
pub(super) fn waiting_for(endpoint: &Option<String>) -> String {
    endpoint
        .as_ref()
        .map_or(String::new(), |e| format!(" waiting for endpoint {e}"))
}

/// Every problem on a line of its own.
pub(super) fn listed(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// ` at revision N` for a value read from etcd.
pub(super) fn at_revision(revision: &Option<i64>) -> String {
    revision.map_or(String::new(), |r| format!(" at revision {r}"))
}

/// ` and not saved` for a value about to be saved.
pub(super) fn not_saved(revision: &Option<i64>) -> &'static str {
    if revision.is_some() {
        ""
    } else {
        " and not saved"
    }
}

/// `a (serves revision 1), b (serves revision 2)`.
pub(super) fn serving(behind: &[(String, i64)]) -> String {
    let listed: Vec<String> = behind
        .iter()
        .map(|(instance, serves)| format!("{instance} (serves revision {serves})"))
        .collect();
    listed.join(", ")
}
