//! Who is who in a test cluster: member ids, the leader, the member a client talks to, and
//! cutting a member off from its peers.

use std::time::Duration;

use etcd_config::Client;

use super::Etcd;

impl Etcd {
    /// Member index by etcd member id, from the member list (names are `m<index>`).
    pub async fn member_ids(&self) -> std::collections::HashMap<u64, usize> {
        let client = Client::connect(self.endpoints(), self.options())
            .await
            .expect("connect for the member list");
        let members = client.cluster().member_list().await.expect("member list");
        members
            .members
            .iter()
            .filter_map(|m| Some((m.id, m.name.strip_prefix('m')?.parse().ok()?)))
            .collect()
    }

    /// The index of the member that is leader now, as member `asked` sees it.
    pub async fn leader(&self, asked: usize) -> Option<usize> {
        let options = self
            .options()
            .dial_timeout(Duration::from_millis(300))
            .request_timeout(Duration::from_secs(1));
        let one = Client::connect([self.endpoint(asked)], options)
            .await
            .ok()?;
        let status = one.maintenance().status().await.ok()?;
        (status.leader != 0).then_some(())?;
        self.member_ids().await.get(&status.leader).copied()
    }

    /// Cuts member `i` off from its peers (both ways) while its clients still reach it.
    pub fn isolate(&self, i: usize) {
        self.net
            .as_ref()
            .expect("built with peer_faults()")
            .isolate(i);
    }

    /// Ends every cut between members.
    pub fn heal(&self) {
        self.net.as_ref().expect("built with peer_faults()").heal();
    }

    /// Which member (index into `members`) has etcd member ID `member_id`; members that are
    /// stopped or frozen are skipped.
    pub async fn member_index(&self, member_id: u64) -> usize {
        let options = self
            .options()
            .dial_timeout(Duration::from_millis(300))
            .request_timeout(Duration::from_secs(1));
        for i in 0..self.members.len() {
            let Ok(one) = Client::connect([self.endpoint(i)], options.clone()).await else {
                continue;
            };
            if let Ok(status) = one.maintenance().status().await {
                if status.header.member_id == member_id {
                    return i;
                }
            }
        }
        panic!("no running member has id {member_id:x}");
    }

    /// The member `client` is talking to now, from the header of a read.
    pub async fn member_in_use(&self, client: &Client) -> usize {
        let header = client
            .kv()
            .get("/probe")
            .serializable()
            .await
            .unwrap()
            .header;
        self.member_index(header.member_id).await
    }
}
