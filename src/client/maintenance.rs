//! etcd's Maintenance service: status, alarms, defragmentation, hashes, snapshots, leader moves.
//!
//! These calls go to the client's current endpoint; to ask a particular member, connect a
//! client to that member alone.

use super::transport::Retry;
use super::{Client, ResponseHeader};
use crate::error::Result;
use crate::proto::etcdserverpb as pb;

/// Handle to the Maintenance service of a [`Client`].
#[derive(Clone, Debug)]
pub struct Maintenance {
    client: Client,
}

/// A member's view of itself and the cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
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
    pub async fn status(&self) -> Result<Status> {
        let r = self
            .client
            .transport()
            .unary(
                |_: &pb::StatusRequest| "Status".to_owned(),
                Retry::Idempotent,
                pb::StatusRequest {},
                |conn, request| async move { conn.maintenance().status(request).await },
            )
            .await?;
        Ok(Status {
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
    pub async fn alarms(&self) -> Result<Vec<(u64, Alarm)>> {
        self.alarm(pb::alarm_request::AlarmAction::Get, 0, pb::AlarmType::None)
            .await
    }

    /// Disarms `alarm` on `member` (after freeing space, for [`Alarm::NoSpace`]).
    pub async fn disarm(&self, member: u64, alarm: Alarm) -> Result<Vec<(u64, Alarm)>> {
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
    ) -> Result<Vec<(u64, Alarm)>> {
        let r = self
            .client
            .transport()
            .unary(
                |_: &pb::AlarmRequest| "Alarm".to_owned(),
                Retry::Idempotent,
                pb::AlarmRequest {
                    action: action as i32,
                    member_id,
                    alarm: alarm as i32,
                },
                |conn, request| async move { conn.maintenance().alarm(request).await },
            )
            .await?;
        Ok(r.alarms
            .into_iter()
            .filter_map(|a| match pb::AlarmType::try_from(a.alarm) {
                Ok(pb::AlarmType::Nospace) => Some((a.member_id, Alarm::NoSpace)),
                Ok(pb::AlarmType::Corrupt) => Some((a.member_id, Alarm::Corrupt)),
                _ => None,
            })
            .collect())
    }

    /// Defragments the current member's database, returning freed space to the file system.
    /// Blocks that member while it runs; the request timeout applies.
    pub async fn defragment(&self) -> Result<ResponseHeader> {
        let r = self
            .client
            .transport()
            .unary(
                |_: &pb::DefragmentRequest| "Defragment".to_owned(),
                Retry::Idempotent,
                pb::DefragmentRequest {},
                |conn, request| async move { conn.maintenance().defragment(request).await },
            )
            .await?;
        Ok(r.header.into())
    }

    /// A hash of the key-value store up to `revision` (0 = now), and the compact revision it
    /// starts from: equal hashes across members mean equal data.
    pub async fn hash_kv(&self, revision: i64) -> Result<(u32, i64)> {
        let r = self
            .client
            .transport()
            .unary(
                |r: &pb::HashKvRequest| format!("HashKV {}", r.revision),
                Retry::Idempotent,
                pb::HashKvRequest { revision },
                |conn, request| async move { conn.maintenance().hash_kv(request).await },
            )
            .await?;
        Ok((r.hash, r.compact_revision))
    }

    /// Asks the current member, which must be the leader, to hand leadership to `member`.
    pub async fn move_leader(&self, member: u64) -> Result<ResponseHeader> {
        let r = self
            .client
            .transport()
            .unary(
                |r: &pb::MoveLeaderRequest| format!("MoveLeader {:x}", r.target_id),
                Retry::Mutation,
                pb::MoveLeaderRequest { target_id: member },
                |conn, request| async move { conn.maintenance().move_leader(request).await },
            )
            .await?;
        Ok(r.header.into())
    }

    /// Streams a snapshot of the current member's database and returns it whole.
    ///
    /// The result is an etcd backend file that `etcdutl snapshot restore` accepts. Not bound by
    /// the request timeout (a large database takes long to send); held in memory.
    pub async fn snapshot(&self) -> Result<Vec<u8>> {
        let (index, conn) = self.client.transport().current_conn().await?;
        let mut request = tonic::Request::new(pb::SnapshotRequest {});
        if let Some(credentials) = &self.client.transport().credentials {
            credentials.attach(&mut request);
        }
        let endpoint = self.client.transport().endpoint_name(index).to_owned();
        let to_error =
            |status: tonic::Status| super::transport::status_error(&endpoint, "Snapshot", status);
        let mut stream = conn
            .maintenance()
            .snapshot(request)
            .await
            .map_err(to_error)?
            .into_inner();
        let mut snapshot = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(to_error)? {
            snapshot.extend_from_slice(&chunk.blob);
        }
        Ok(snapshot)
    }
}
