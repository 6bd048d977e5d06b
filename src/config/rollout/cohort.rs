//! Who serves the candidate at each step: instances ranked by a hash of the rollout's salt and
//! their stable identity (SHA-256, the same in every process and Rust version), the first N of
//! that order. Each step's members include the last step's, and a step has at least one.

use ring::digest::{digest, SHA256};

use super::Step;

/// How many of `fleet` instances `step` covers: at least one, at most all.
pub(crate) fn size(step: Step, fleet: usize) -> usize {
    let wanted = match step {
        Step::Instances(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Step::Percent(p) => (fleet * usize::from(p.min(100))).div_ceil(100),
    };
    wanted.clamp(1, fleet.max(1)).min(fleet)
}

/// `identities` in rollout order for `salt` (the rollout's id).
pub(crate) fn rank<'a>(salt: &str, identities: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut ranked: Vec<([u8; 32], &str)> = identities
        .into_iter()
        .map(|identity| {
            let mut input = Vec::with_capacity(salt.len() + identity.len() + 1);
            input.extend_from_slice(salt.as_bytes());
            input.push(0);
            input.extend_from_slice(identity.as_bytes());
            let mut hash = [0; 32];
            hash.copy_from_slice(digest(&SHA256, &input).as_ref());
            (hash, identity)
        })
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, id)| id.to_owned()).collect()
}

/// The members of a step: the last step's members still eligible, topped up in rank order
/// from `eligible` to `size`.
pub(crate) fn members(
    salt: &str,
    eligible: &[&str],
    previous: &[String],
    size: usize,
) -> Vec<String> {
    let mut members: Vec<String> = previous
        .iter()
        .filter(|m| eligible.contains(&m.as_str()))
        .cloned()
        .collect();
    for identity in rank(salt, eligible.iter().copied()) {
        if members.len() >= size {
            break;
        }
        if !members.contains(&identity) {
            members.push(identity);
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_and_stay_within_the_fleet() {
        assert_eq!(size(Step::Instances(1), 10), 1);
        assert_eq!(size(Step::Instances(5), 3), 3);
        assert_eq!(size(Step::Percent(25), 10), 3);
        assert_eq!(size(Step::Percent(1), 10), 1);
        assert_eq!(size(Step::Percent(100), 7), 7);
        assert_eq!(size(Step::Percent(0), 7), 1);
        assert_eq!(size(Step::Instances(1), 0), 0);
    }

    #[test]
    fn ranking_is_stable_and_steps_grow() {
        // A fixed order: the same in every process, every build.
        let ids = ["gw-1", "gw-2", "gw-3", "gw-4"];
        let order = rank("r-1", ids);
        assert_eq!(order, rank("r-1", ids.iter().rev().copied()));
        assert_ne!(order, rank("r-2", ids), "another salt, another order");
        let first = members("r-1", &ids, &[], 1);
        let second = members("r-1", &ids, &first, 2);
        assert_eq!(first[0], second[0]);
        assert_eq!(second.len(), 2);
        // A member gone is replaced by the next in rank.
        let without: Vec<&str> = ids.iter().copied().filter(|i| *i != first[0]).collect();
        let topped = members("r-1", &without, &second, 2);
        assert_eq!(topped.len(), 2);
        assert!(!topped.contains(&first[0]));
    }
}
