//! etcd's Maintenance service: status, alarms, defragmentation, hashes, snapshots, leader moves.

use ring::digest;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Client, ResponseHeader};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb as pb;

/// The length of the SHA-256 etcd appends to a snapshot.
const CHECKSUM_LEN: usize = 32;

/// What [`Maintenance::downgrade`] asks etcd to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downgrade {
    /// Check that the cluster could downgrade to the version; change nothing.
    Validate,
    /// Start the downgrade: members then accept the older version's binaries.
    Enable,
    /// Cancel a downgrade in progress.
    Cancel,
}

/// Handle to the Maintenance service of a [`Client`].
///
/// These calls go to the client's current endpoint; to ask a particular member, connect a
/// client to that member alone.
#[derive(Clone, Debug)]
pub struct Maintenance {
    client: Client,
}

/// A member's view of itself and the cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemberStatus {
    /// Who answered (its `member_id` is the member described).
    pub header: ResponseHeader,
    /// The etcd version, e.g. `3.5.1`.
    pub version: String,
    /// Size of the backend database file, in bytes.
    pub db_size: i64,
    /// Bytes of the database in use (the rest can be reclaimed by defragmenting).
    pub db_size_in_use: i64,
    /// The member ID of the current leader, 0 if there is none.
    pub leader: u64,
    /// The raft index.
    pub raft_index: u64,
    /// The raft term.
    pub raft_term: u64,
    /// Errors the member reports (e.g. an alarm).
    pub errors: Vec<String>,
    /// True if the member is a learner.
    pub is_learner: bool,
}

/// A hash of a member's whole backend database, from [`Maintenance::hash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hash {
    /// Who answered (the member hashed).
    pub header: ResponseHeader,
    /// The CRC-32 of the database.
    pub hash: u32,
}

/// A hash of a member's key-value store, from [`Maintenance::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HashKv {
    /// Who answered (the member hashed).
    pub header: ResponseHeader,
    /// The CRC-32 of every key's revisions, from `compact_revision` up to the requested one.
    pub hash: u32,
    /// The compaction the hash starts from: compare hashes of members at the same one.
    pub compact_revision: i64,
}

/// An alarm and the member it is raised on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlarmMember {
    /// The member with the alarm.
    pub member_id: u64,
    /// The alarm.
    pub alarm: Alarm,
}

/// An alarm raised on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alarm {
    /// The database reached its space quota: writes are refused until space is freed and the
    /// alarm disarmed.
    NoSpace,
    /// The member found its data corrupt.
    Corrupt,
}

impl Maintenance {
    pub(crate) fn new(client: Client) -> Self {
        Maintenance { client }
    }

    /// The status of the member the client is talking to.
    pub async fn status(&self) -> Result<MemberStatus> {
        let r = self.client.call(pb::StatusRequest {}).await?;
        Ok(MemberStatus {
            header: r.header.into(),
            version: r.version,
            db_size: r.db_size,
            db_size_in_use: r.db_size_in_use,
            leader: r.leader,
            raft_index: r.raft_index,
            raft_term: r.raft_term,
            errors: r.errors,
            is_learner: r.is_learner,
        })
    }

    /// The alarms raised in the cluster, with the member each is raised on.
    pub async fn alarms(&self) -> Result<Vec<AlarmMember>> {
        self.alarm(pb::alarm_request::AlarmAction::Get, 0, pb::AlarmType::None)
            .await
    }

    /// Disarms `alarm` on `member` (after freeing space, for [`Alarm::NoSpace`]).
    pub async fn disarm(&self, member: u64, alarm: Alarm) -> Result<Vec<AlarmMember>> {
        let alarm = match alarm {
            Alarm::NoSpace => pb::AlarmType::Nospace,
            Alarm::Corrupt => pb::AlarmType::Corrupt,
        };
        self.alarm(pb::alarm_request::AlarmAction::Deactivate, member, alarm)
            .await
    }

    async fn alarm(
        &self,
        action: pb::alarm_request::AlarmAction,
        member_id: u64,
        alarm: pb::AlarmType,
    ) -> Result<Vec<AlarmMember>> {
        let r = self
            .client
            .call(pb::AlarmRequest {
                action: action as i32,
                member_id,
                alarm: alarm as i32,
            })
            .await?;
        Ok(r.alarms
            .into_iter()
            .filter_map(|a| {
                let alarm = match pb::AlarmType::try_from(a.alarm) {
                    Ok(pb::AlarmType::Nospace) => Alarm::NoSpace,
                    Ok(pb::AlarmType::Corrupt) => Alarm::Corrupt,
                    _ => return None,
                };
                let member_id = a.member_id;
                Some(AlarmMember { member_id, alarm })
            })
            .collect())
    }

    /// Defragments the current member's database, returning freed space to the file system.
    /// Blocks that member while it runs; the request timeout applies.
    pub async fn defragment(&self) -> Result<ResponseHeader> {
        let r = self.client.call(pb::DefragmentRequest {}).await?;
        Ok(r.header.into())
    }

    /// A hash of the current member's whole backend database (every bucket, etcd's own
    /// included). Meant for testing; compare members with [`hash_kv`](Self::hash_kv).
    pub async fn hash(&self) -> Result<Hash> {
        let r = self.client.call(pb::HashRequest {}).await?;
        Ok(Hash {
            header: r.header.into(),
            hash: r.hash,
        })
    }

    /// Validates, starts or cancels a downgrade of the cluster to `version` (e.g. `3.4.0`: one
    /// minor version below the cluster's). Returns the cluster version etcd reports.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] on etcd 3.4, which has no Downgrade call. etcd's refusals are
    /// typed: `WrongDowngradeVersionFormat`, `InvalidDowngradeTargetVersion`,
    /// `DowngradeInProcess` (enabling twice), `NoInflightDowngrade` (cancelling none).
    /// etcd 3.5 applies an `Enable` but may not answer it before the request timeout
    /// (etcd-io/etcd#15878; downgrades are complete from etcd 3.6): check with `Validate` or
    /// `Cancel` afterwards.
    pub async fn downgrade(&self, action: Downgrade, version: &str) -> Result<String> {
        use pb::downgrade_request::DowngradeAction;
        let action = match action {
            Downgrade::Validate => DowngradeAction::Validate,
            Downgrade::Enable => DowngradeAction::Enable,
            Downgrade::Cancel => DowngradeAction::Cancel,
        };
        let request = pb::DowngradeRequest {
            action: action.into(),
            version: version.to_owned(),
        };
        let r = self
            .client
            .call(request)
            .await
            .map_err(|err| err.unsupported_as("Downgrade (etcd 3.5 and later)"))?;
        Ok(r.version)
    }

    /// A hash of the key-value store up to `revision` (0 = now), and the compact revision it
    /// starts from: equal hashes across members mean equal data.
    pub async fn hash_kv(&self, revision: i64) -> Result<HashKv> {
        let r = self.client.call(pb::HashKvRequest { revision }).await?;
        Ok(HashKv {
            header: r.header.into(),
            hash: r.hash,
            compact_revision: r.compact_revision,
        })
    }

    /// Asks the current member, which must be the leader, to hand leadership to `member`.
    pub async fn move_leader(&self, member: u64) -> Result<ResponseHeader> {
        let r = self
            .client
            .call(pb::MoveLeaderRequest { target_id: member })
            .await?;
        Ok(r.header.into())
    }

    /// Streams a snapshot of the current member's database and returns it whole, in memory.
    /// For a large database, prefer [`snapshot_to`](Self::snapshot_to).
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        let mut snapshot = Vec::new();
        self.snapshot_to(&mut snapshot).await?;
        Ok(snapshot)
    }

    /// Streams a snapshot of the current member's database into `writer`, chunk by chunk, and
    /// returns the number of bytes written.
    ///
    /// What is written is what `etcdctl snapshot save` writes: the backend database followed
    /// by the 32-byte SHA-256 etcd appends to it, a file `etcdctl snapshot restore` (or
    /// `etcdutl`) accepts. The checksum is verified as the data goes through. The first chunk
    /// must come within the dial timeout; the whole transfer is not bound by the request timeout
    /// (a large database takes long to send). The writer is flushed, not closed or synced.
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`] if the writer fails or the checksum does not match (then what was
    /// written must be discarded); the server's and transport errors as for any call. With
    /// auth on, etcd gives snapshots to the `root` role only (`PermissionDenied` for other
    /// users, `UserEmpty` without credentials).
    pub async fn snapshot_to<W>(&self, writer: &mut W) -> Result<u64>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        self.client.transport().authenticated().await?;
        let (index, conn) = self.client.transport().current_conn().await?;
        let mut request = tonic::Request::new(pb::SnapshotRequest {});
        if let Some(credentials) = &self.client.transport().credentials {
            credentials.attach(&mut request);
        }
        let endpoint = self.client.transport().endpoint_name(index).to_owned();
        let to_error =
            |status: tonic::Status| super::transport::status_error(&endpoint, "Snapshot", status);
        let failed = |reason: String| Error::Snapshot {
            endpoint: endpoint.clone(),
            reason,
        };
        let mut stream = self
            .client
            .transport()
            .open_stream(index, "Snapshot", conn.maintenance().snapshot(request))
            .await?;

        let mut checksum = Checksum::new();
        let mut written = 0u64;
        while let Some(chunk) = stream.message().await.map_err(to_error)? {
            writer
                .write_all(&chunk.blob)
                .await
                .map_err(|err| failed(format!("writing failed: {err}")))?;
            written += chunk.blob.len() as u64;
            checksum.update(&chunk.blob);
        }
        writer
            .flush()
            .await
            .map_err(|err| failed(format!("writing failed: {err}")))?;
        if !checksum.matches() {
            return Err(failed(format!(
                "the {written} bytes received do not match the SHA-256 etcd sent with them"
            )));
        }
        Ok(written)
    }
}

/// Checks a snapshot stream whose last 32 bytes are the SHA-256 of everything before them.
/// The newest 32 bytes seen are held back from the hash until more data arrives.
struct Checksum {
    hash: digest::Context,
    tail: Vec<u8>,
}

impl Checksum {
    fn new() -> Self {
        Checksum {
            hash: digest::Context::new(&digest::SHA256),
            tail: Vec::with_capacity(2 * CHECKSUM_LEN),
        }
    }

    fn update(&mut self, chunk: &[u8]) {
        if chunk.len() >= CHECKSUM_LEN {
            let (body, last) = chunk.split_at(chunk.len() - CHECKSUM_LEN);
            self.hash.update(&self.tail);
            self.hash.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(last);
        } else {
            self.tail.extend_from_slice(chunk);
            let spill = self.tail.len().saturating_sub(CHECKSUM_LEN);
            self.hash.update(&self.tail[..spill]);
            self.tail.drain(..spill);
        }
    }

    fn matches(self) -> bool {
        self.tail.len() == CHECKSUM_LEN && self.hash.finish().as_ref() == self.tail.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(data: &[u8]) -> Vec<u8> {
        let mut stream = data.to_vec();
        stream.extend_from_slice(digest::digest(&digest::SHA256, data).as_ref());
        stream
    }

    fn check(stream: &[u8], chunk_len: usize) -> bool {
        let mut checksum = Checksum::new();
        stream
            .chunks(chunk_len)
            .for_each(|chunk| checksum.update(chunk));
        checksum.matches()
    }

    #[test]
    fn any_chunking_verifies() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let stream = stream_of(&data);
        for chunk_len in [1, 5, 31, 32, 33, 64, 100, 1031, 1032, 5000] {
            assert!(check(&stream, chunk_len), "chunks of {chunk_len}");
        }
        assert!(check(&stream_of(b""), 32));
    }

    #[test]
    fn corruption_and_truncation_are_caught() {
        let data = vec![7u8; 300];
        let mut corrupt = stream_of(&data);
        corrupt[150] ^= 1;
        let mut bad_sum = stream_of(&data);
        *bad_sum.last_mut().unwrap() ^= 1;
        let stream = stream_of(&data);
        let truncated = &stream[..stream.len() - 1];
        for chunk_len in [1, 32, 100] {
            assert!(!check(&corrupt, chunk_len));
            assert!(!check(&bad_sum, chunk_len));
            assert!(!check(truncated, chunk_len));
        }
        assert!(!check(&[1, 2, 3], 1));
    }
}
