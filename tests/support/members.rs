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

    /// The endpoints of every member but `lost` (one stopped or frozen).
    pub fn endpoints_without(&self, lost: usize) -> Vec<String> {
        (0..self.members.len())
            .filter(|&i| i != lost)
            .map(|i| self.endpoint(i))
            .collect()
    }

    /// Puts `key_0`, `key_1`, ... through `client` until `count` of them succeed, and returns
    /// their revisions: a member just lost may have led, and writes fail during the election.
    pub async fn put_through_election(client: &Client, key: &str, count: usize) -> Vec<i64> {
        let mut written = Vec::new();
        while written.len() < count {
            match client
                .kv()
                .put(format!("{key}{}", written.len()), "v")
                .await
            {
                Ok(put) => written.push(put.header.revision),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        written
    }
}

impl Etcd {
    /// Adds a voting member to the running cluster (MemberAdd, then its process joining with
    /// `--initial-cluster-state=existing`) and waits until it answers; returns its index.
    pub async fn add_member(&mut self) -> usize {
        let i = self.members.len();
        let name = format!("m{i}");
        let (client_port, peer_port) = (super::free_port(), super::free_port());
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let client_url = format!("http://127.0.0.1:{client_port}");
        let running: Vec<usize> = (0..i)
            .filter(|&j| self.members[j].child.is_some())
            .collect();
        let endpoints: Vec<String> = running.iter().map(|&j| self.endpoint(j)).collect();
        let client = Client::connect(endpoints, self.options())
            .await
            .expect("connect");
        // etcd refuses a member add until every member has been connected for a few seconds
        // (--strict-reconfig-check): ask again meanwhile.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match client.cluster().member_add([peer_url.clone()]).await {
                Ok(_) => break,
                Err(err)
                    if err.server_kind() == Some(etcd_config::ServerErrorKind::Unhealthy)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => panic!("member add: {err}"),
            }
        }
        let mut initial: Vec<String> = running
            .iter()
            .map(|&j| {
                let m = &self.members[j];
                format!("{}=http://127.0.0.1:{}", m.name, m.advertised_peer_port)
            })
            .collect();
        initial.push(format!("{name}={peer_url}"));
        let args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", self.dir.path().join(&name).display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=existing".to_owned(),
            "--logger=zap".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        self.members.push(super::Member {
            log: self.dir.path().join(format!("{name}.log")),
            name,
            client_port,
            peer_port,
            advertised_peer_port: peer_port,
            args,
            child: None,
        });
        self.spawn(i);
        self.wait_ready(i).await;
        i
    }

    /// Removes member `i` from the cluster (MemberRemove, asked of the others) and stops it.
    pub async fn remove_member(&mut self, i: usize) {
        let id = self
            .member_ids()
            .await
            .into_iter()
            .find_map(|(id, index)| (index == i).then_some(id))
            .expect("the member's id");
        let others: Vec<String> = (0..self.members.len())
            .filter(|&j| j != i && self.members[j].child.is_some())
            .map(|j| self.endpoint(j))
            .collect();
        let client = Client::connect(others, self.options())
            .await
            .expect("connect");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match client.cluster().member_remove(id).await {
                Ok(_) => break,
                // As for adding: the members must have been connected a few seconds.
                Err(err)
                    if err.server_kind() == Some(etcd_config::ServerErrorKind::Unhealthy)
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => panic!("member remove: {err}"),
            }
        }
        self.stop(i);
    }
}
