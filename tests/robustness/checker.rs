//! The history checker: what every reader and writer saw, against what etcd recorded.
//!
//! The config under test stores one generation number in each of its four fields, and every
//! write sets all four to a new generation in one txn, so a value whose fields differ is torn,
//! and the generation at a revision says which write a reader is looking at.

use std::collections::{BTreeMap, HashMap};

/// The four fields of the config, as a reader saw them.
pub(crate) type Fields = [u64; 4];

/// The names `Update::changed` uses for the four fields.
pub(crate) const FIELD_NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// What etcd recorded: every revision that wrote the config, and the compactions.
#[derive(Debug, Default, Clone)]
pub(crate) struct Truth {
    /// Revision → the four values written at it (by the ground-truth recorder).
    pub(crate) writes: BTreeMap<i64, Fields>,
    /// Revisions compacted at, in order.
    pub(crate) compactions: Vec<i64>,
    /// The revision and generation etcd held at the end.
    pub(crate) last: (i64, u64),
}

impl Truth {
    /// The generation the config held at `revision`.
    fn at(&self, revision: i64) -> Option<u64> {
        self.writes
            .range(..=revision)
            .next_back()
            .map(|(_, f)| f[0])
    }

    /// Whether a reader that saw `from` and next `to` was sent past the revisions between by a
    /// compaction (and then resynchronised to etcd's value): one compacted away the revision
    /// after `from` before the reader got to it, and `to` is at or after it.
    fn compaction_between(&self, from: i64, to: i64) -> bool {
        self.compactions.iter().any(|&c| c > from + 1 && c <= to)
    }
}

/// One update of a `Store::watch` reader.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) revision: i64,
    pub(crate) fields: Fields,
    pub(crate) previous: Fields,
    pub(crate) changed: Vec<String>,
}

/// Everything one `Store::watch` reader saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchHistory {
    pub(crate) name: String,
    /// The revision and value the watch started from.
    pub(crate) initial: (i64, Fields),
    pub(crate) updates: Vec<Seen>,
    /// Error items and the end of the stream: none may happen.
    pub(crate) errors: Vec<String>,
}

/// What one `Live` handle served, sampled: (revision, value).
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveHistory {
    pub(crate) name: String,
    pub(crate) samples: Vec<(i64, Fields)>,
}

/// A write a writer made: the generation, and the revision etcd acknowledged (`None` when the
/// write failed and may or may not have been applied).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write {
    /// Which writer: `crate` or `etcdctl`.
    pub(crate) by: &'static str,
    pub(crate) generation: u64,
    pub(crate) acknowledged: Option<i64>,
}

/// Violation counts by kind; all must be zero.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Violations {
    pub(crate) torn: u64,
    pub(crate) duplicate: u64,
    pub(crate) out_of_order: u64,
    pub(crate) gap: u64,
    pub(crate) wrong_value: u64,
    pub(crate) previous: u64,
    pub(crate) changed: u64,
    pub(crate) not_converged: u64,
    pub(crate) errors: u64,
    pub(crate) write_wrong: u64,
    pub(crate) write_twice: u64,
    /// etcd's members hold different data at the same revision (set by the caller, from
    /// their KV hashes).
    pub(crate) etcd_diverged: u64,
    /// Not a violation: gaps a compaction explains (the reader loaded etcd's value again).
    pub(crate) resyncs: u64,
    /// What each was, for the failure message.
    pub(crate) details: Vec<String>,
}

impl Violations {
    pub(crate) fn total(&self) -> u64 {
        self.torn
            + self.duplicate
            + self.out_of_order
            + self.gap
            + self.wrong_value
            + self.previous
            + self.changed
            + self.not_converged
            + self.errors
            + self.write_wrong
            + self.write_twice
            + self.etcd_diverged
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "torn={} duplicate={} out-of-order={} gap={} wrong-value={} previous={} changed={} \
             not-converged={} errors={} write-wrong={} write-twice={} etcd-diverged={}",
            self.torn,
            self.duplicate,
            self.out_of_order,
            self.gap,
            self.wrong_value,
            self.previous,
            self.changed,
            self.not_converged,
            self.errors,
            self.write_wrong,
            self.write_twice,
            self.etcd_diverged
        )
    }

    fn note(&mut self, detail: String) {
        if self.details.len() < 20 {
            self.details.push(detail);
        }
    }
}

fn torn(fields: &Fields) -> bool {
    fields.iter().any(|&f| f != fields[0])
}

/// Checks every history against the truth.
pub(crate) fn check(
    truth: &Truth,
    watches: &[WatchHistory],
    lives: &[LiveHistory],
    writes: &[Write],
) -> Violations {
    let mut v = Violations::default();

    // etcd itself: every recorded write is whole, and no generation was applied twice.
    let mut applied: HashMap<u64, i64> = HashMap::new();
    for (&revision, fields) in &truth.writes {
        if torn(fields) {
            v.torn += 1;
            v.note(format!("etcd holds a torn value at {revision}: {fields:?}"));
        }
        if let Some(first) = applied.insert(fields[0], revision) {
            v.write_twice += 1;
            v.note(format!(
                "generation {} applied at {first} and {revision}",
                fields[0]
            ));
        }
    }
    for write in writes {
        if let Some(revision) = write.acknowledged {
            if truth.writes.get(&revision).map(|f| f[0]) != Some(write.generation) {
                v.write_wrong += 1;
                v.note(format!(
                    "{} write of generation {} acknowledged at {revision}, etcd holds {:?} there",
                    write.by,
                    write.generation,
                    truth.writes.get(&revision)
                ));
            }
        }
    }

    for watch in watches {
        check_watch(truth, watch, &mut v);
    }
    for live in lives {
        check_live(truth, live, &mut v);
    }
    v
}

fn check_watch(truth: &Truth, watch: &WatchHistory, v: &mut Violations) {
    let name = &watch.name;
    for error in &watch.errors {
        v.errors += 1;
        v.note(format!("{name}: {error}"));
    }
    let (mut last_revision, mut last_fields) = watch.initial;
    for seen in &watch.updates {
        let r = seen.revision;
        if torn(&seen.fields) {
            v.torn += 1;
            v.note(format!("{name}: torn value at {r}: {:?}", seen.fields));
        }
        if r == last_revision {
            v.duplicate += 1;
            v.note(format!("{name}: revision {r} twice"));
            continue;
        }
        if r < last_revision {
            v.out_of_order += 1;
            v.note(format!("{name}: revision {r} after {last_revision}"));
            continue;
        }
        if truth.at(r) != Some(seen.fields[0]) {
            v.wrong_value += 1;
            v.note(format!(
                "{name}: generation {} at {r}, etcd held {:?}",
                seen.fields[0],
                truth.at(r)
            ));
        }
        let skipped = truth.writes.range(last_revision + 1..r).count();
        if skipped > 0 && truth.compaction_between(last_revision, r) {
            v.resyncs += 1;
        } else if skipped > 0 {
            v.gap += 1;
            v.note(format!(
                "{name}: {skipped} writes between {last_revision} and {r} never arrived"
            ));
        }
        if seen.previous != last_fields {
            v.previous += 1;
            v.note(format!(
                "{name}: previous {:?} at {r}, last seen {last_fields:?}",
                seen.previous
            ));
        }
        let mut changed = seen.changed.clone();
        changed.sort();
        if changed != FIELD_NAMES {
            v.changed += 1;
            v.note(format!("{name}: changed {changed:?} at {r}"));
        }
        (last_revision, last_fields) = (r, seen.fields);
    }
    if last_fields[0] != truth.last.1 {
        v.not_converged += 1;
        v.note(format!(
            "{name}: ended at generation {} (revision {last_revision}), etcd holds {:?}",
            last_fields[0], truth.last
        ));
    }
}

fn check_live(truth: &Truth, live: &LiveHistory, v: &mut Violations) {
    let name = &live.name;
    let mut last = 0;
    for &(revision, fields) in &live.samples {
        if torn(&fields) {
            v.torn += 1;
            v.note(format!("{name}: torn value at {revision}: {fields:?}"));
        }
        if revision < last {
            v.out_of_order += 1;
            v.note(format!("{name}: went back from {last} to {revision}"));
        }
        last = last.max(revision);
        if truth.at(revision) != Some(fields[0]) {
            v.wrong_value += 1;
            v.note(format!(
                "{name}: generation {} at {revision}, etcd held {:?}",
                fields[0],
                truth.at(revision)
            ));
        }
    }
    if live.samples.last().map(|s| s.1[0]) != Some(truth.last.1) {
        v.not_converged += 1;
        v.note(format!(
            "{name}: ended at {:?}, etcd holds {:?}",
            live.samples.last(),
            truth.last
        ));
    }
}

#[cfg(test)]
mod self_test {
    //! A checker that cannot fail is worthless: each kind of violation, fabricated, is caught.

    use super::*;

    fn all(g: u64) -> Fields {
        [g; 4]
    }

    /// Generations 0..=4 written at revisions 10..=14; a compaction at 12.
    fn truth() -> Truth {
        Truth {
            writes: (0..5).map(|g| (10 + g as i64, all(g))).collect(),
            compactions: vec![],
            last: (14, 4),
        }
    }

    fn seen(revision: i64, g: u64, previous: u64) -> Seen {
        Seen {
            revision,
            fields: all(g),
            previous: all(previous),
            changed: FIELD_NAMES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn clean_watch() -> WatchHistory {
        WatchHistory {
            name: "w".into(),
            initial: (10, all(0)),
            updates: vec![
                seen(11, 1, 0),
                seen(12, 2, 1),
                seen(13, 3, 2),
                seen(14, 4, 3),
            ],
            errors: vec![],
        }
    }

    fn clean_live() -> LiveHistory {
        LiveHistory {
            name: "l".into(),
            samples: vec![(10, all(0)), (12, all(2)), (14, all(4))],
        }
    }

    fn one_watch(watch: WatchHistory) -> Violations {
        check(&truth(), &[watch], &[], &[])
    }

    #[test]
    fn clean_histories_pass() {
        let writes = [Write {
            by: "crate",
            generation: 2,
            acknowledged: Some(12),
        }];
        let v = check(&truth(), &[clean_watch()], &[clean_live()], &writes);
        assert_eq!(v.total(), 0, "{v:?}");
    }

    #[test]
    fn every_violation_is_caught() {
        let mut w = clean_watch();
        w.updates[1].fields = [2, 2, 1, 2];
        assert_eq!(one_watch(w).torn, 1);

        let mut w = clean_watch();
        w.updates.insert(2, seen(12, 2, 2));
        assert_eq!(one_watch(w).duplicate, 1);

        let mut w = clean_watch();
        w.updates.swap(1, 2);
        assert!(one_watch(w).out_of_order >= 1);

        let mut w = clean_watch();
        w.updates.remove(1);
        w.updates[1].previous = all(1);
        assert_eq!(one_watch(w).gap, 1);

        let mut w = clean_watch();
        w.updates[2] = seen(13, 7, 2);
        let v = one_watch(w);
        assert_eq!(v.wrong_value, 1);

        let mut w = clean_watch();
        w.updates[2].previous = all(0);
        assert_eq!(one_watch(w).previous, 1);

        let mut w = clean_watch();
        w.updates[0].changed = vec!["a".into()];
        assert_eq!(one_watch(w).changed, 1);

        let mut w = clean_watch();
        w.updates.pop();
        assert_eq!(one_watch(w).not_converged, 1);

        let mut w = clean_watch();
        w.errors.push("the watch ended".into());
        assert_eq!(one_watch(w).errors, 1);

        let mut l = clean_live();
        l.samples.push((12, all(2)));
        let v = check(&truth(), &[], &[l], &[]);
        assert_eq!((v.out_of_order, v.not_converged), (1, 1));

        let mut l = clean_live();
        l.samples[1] = (12, all(3));
        assert_eq!(check(&truth(), &[], &[l], &[]).wrong_value, 1);

        let mut l = clean_live();
        l.samples[1] = (12, [2, 2, 2, 9]);
        assert_eq!(check(&truth(), &[], &[l], &[]).torn, 1);

        let wrong = [Write {
            by: "crate",
            generation: 3,
            acknowledged: Some(12),
        }];
        assert_eq!(check(&truth(), &[], &[], &wrong).write_wrong, 1);

        let mut twice = truth();
        twice.writes.insert(15, all(2));
        twice.last = (15, 2);
        assert_eq!(check(&twice, &[], &[], &[]).write_twice, 1);

        let mut torn_in_etcd = truth();
        torn_in_etcd.writes.insert(11, [1, 1, 1, 0]);
        assert_eq!(check(&torn_in_etcd, &[], &[], &[]).torn, 1);
    }

    /// A gap is allowed only where a compaction explains it.
    #[test]
    fn a_compaction_explains_a_gap() {
        let mut w = clean_watch();
        w.updates.remove(1);
        w.updates[1].previous = all(1);
        let mut t = truth();
        t.compactions.push(13);
        assert_eq!(check(&t, &[w], &[], &[]).total(), 0);
    }
}
