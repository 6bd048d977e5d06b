//! Users, roles and permissions over key ranges against a real etcd, including the reference
//! case of range grants that etcd merges, etcdctl interop, and least privilege for a config.

#[path = "../support/mod.rs"]
mod support;

mod token;
mod watch;

use std::time::Duration;

use etcd_config::client::{Permission, PermissionKind};
use etcd_config::{
    Access, ChangeNote, Client, Error, EtcdConfig, FieldEdits, KeyRange, RangeKind,
    ServerErrorKind, Store,
};
use futures_util::StreamExt;
use support::{Etcd, ROOT_PASSWORD};

fn kind(result: Result<impl std::fmt::Debug, Error>) -> Option<ServerErrorKind> {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(err) => err.server_kind(),
    }
}

/// The reference case, step by step: r1 gets readwrite on [a,b), [k1,k3) and [k2,k4);
/// role_get gives back exactly those ranges; u1 reads [k1,k4) (the grants merge) but not
/// [k1,k5); after revoking [k2,k4), [k1,k4) is denied too.
#[tokio::test]
async fn range_grants_merge() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let auth = root.auth();
    auth.role_add("r1").await.unwrap();
    let grants = [
        KeyRange::range("a", "b"),
        KeyRange::range("k1", "k3"),
        KeyRange::range("k2", "k4"),
    ];
    for range in &grants {
        auth.role_grant_permission(
            "r1",
            Permission::new(PermissionKind::ReadWrite, range.clone()),
        )
        .await
        .unwrap();
    }
    let perms = auth.role_get("r1").await.unwrap();
    let mut got: Vec<KeyRange> = perms.iter().map(|p| p.range.clone()).collect();
    got.sort_by(|x, y| x.start().cmp(y.start()));
    assert_eq!(got, grants);
    assert!(perms.iter().all(|p| p.kind == PermissionKind::ReadWrite));
    assert_eq!(
        perms
            .iter()
            .find(|p| p.range.start() == b"k1")
            .unwrap()
            .range
            .kind(),
        RangeKind::Range
    );

    auth.user_add("u1", "pw1").await.unwrap();
    auth.user_grant_role("u1", "r1").await.unwrap();
    assert_eq!(auth.user_get("u1").await.unwrap(), ["r1"]);
    let u1 = etcd.client_as("u1", "pw1").await;
    u1.kv().put("k1", "1").await.unwrap();
    u1.kv().put("k35", "2").await.unwrap();
    let merged = u1.kv().get(KeyRange::range("k1", "k4")).await.unwrap();
    assert_eq!(merged.count, 2);
    assert_eq!(
        kind(u1.kv().get(KeyRange::range("k1", "k5")).await),
        Some(ServerErrorKind::PermissionDenied)
    );
    assert_eq!(
        kind(u1.kv().put("k4", "x").await),
        Some(ServerErrorKind::PermissionDenied)
    );

    auth.role_revoke_permission("r1", KeyRange::range("k2", "k4"))
        .await
        .unwrap();
    assert_eq!(
        kind(u1.kv().get(KeyRange::range("k1", "k4")).await),
        Some(ServerErrorKind::PermissionDenied)
    );
    assert_eq!(
        u1.kv()
            .get(KeyRange::range("k1", "k3"))
            .await
            .unwrap()
            .count,
        1
    );
    assert_eq!(auth.role_get("r1").await.unwrap().len(), 2);
}

/// Prefix and from-key grants cover what etcd says they cover, and role_get reads them back
/// as prefix and from-key ranges.
#[tokio::test]
async fn prefix_and_from_key_grants() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let auth = root.auth();
    auth.role_add("p").await.unwrap();
    auth.role_grant_permission(
        "p",
        Permission::new(PermissionKind::Read, KeyRange::prefix("/cfg/")),
    )
    .await
    .unwrap();
    auth.role_grant_permission(
        "p",
        Permission::new(PermissionKind::Write, KeyRange::from_key("z")),
    )
    .await
    .unwrap();
    let kinds: Vec<(RangeKind, PermissionKind)> = auth
        .role_get("p")
        .await
        .unwrap()
        .iter()
        .map(|p| (p.range.kind(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (RangeKind::Prefix, PermissionKind::Read),
            (RangeKind::FromKey, PermissionKind::Write)
        ]
    );

    auth.user_add("pu", "pw").await.unwrap();
    auth.user_grant_role("pu", "p").await.unwrap();
    root.kv().put("/cfg/a", "1").await.unwrap();
    root.kv().put("/cfg0", "outside").await.unwrap();
    let user = etcd.client_as("pu", "pw").await;
    assert_eq!(
        user.kv()
            .get(KeyRange::prefix("/cfg/"))
            .await
            .unwrap()
            .count,
        1
    );
    assert_eq!(
        kind(user.kv().get("/cfg0").await),
        Some(ServerErrorKind::PermissionDenied)
    );
    assert_eq!(
        kind(user.kv().put("/cfg/a", "2").await),
        Some(ServerErrorKind::PermissionDenied)
    );
    user.kv().put("zz", "1").await.unwrap();
    user.kv().put("\u{7f}", "1").await.unwrap();
    assert_eq!(
        kind(user.kv().put("y", "1").await),
        Some(ServerErrorKind::PermissionDenied)
    );
    assert_eq!(
        kind(user.kv().get("zz").await),
        Some(ServerErrorKind::PermissionDenied)
    );
}

/// Bad input is refused before anything is sent; etcd's refusals are typed.
#[tokio::test]
async fn bad_input_and_typed_refusals() {
    let etcd = Etcd::single().await;
    let client = etcd.client().await;
    let auth = client.auth();

    // Before auth is on.
    assert_eq!(
        kind(auth.auth_enable().await),
        Some(ServerErrorKind::RootUserNotExist)
    );
    assert_eq!(
        kind(auth.authenticate("nobody", "x").await),
        Some(ServerErrorKind::AuthNotEnabled)
    );

    assert!(matches!(
        auth.user_add("", "pw").await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        auth.role_add("").await,
        Err(Error::InvalidArgument { .. })
    ));
    let backwards = Permission::new(PermissionKind::Read, KeyRange::range("b", "a"));
    let err = auth
        .role_grant_permission("r", backwards)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("[b, a)"), "{err}");

    auth.role_add("r").await.unwrap();
    auth.user_add("u", "pw").await.unwrap();
    assert_eq!(
        kind(auth.role_add("r").await),
        Some(ServerErrorKind::RoleAlreadyExist)
    );
    assert_eq!(
        kind(auth.user_add("u", "pw").await),
        Some(ServerErrorKind::UserAlreadyExist)
    );
    assert_eq!(
        kind(auth.user_get("ghost").await),
        Some(ServerErrorKind::UserNotFound)
    );
    assert_eq!(
        kind(auth.role_get("ghost").await),
        Some(ServerErrorKind::RoleNotFound)
    );
    assert_eq!(
        kind(auth.user_revoke_role("u", "r").await),
        Some(ServerErrorKind::RoleNotGranted)
    );
    assert_eq!(
        kind(
            auth.role_revoke_permission("r", KeyRange::prefix("/x/"))
                .await
        ),
        Some(ServerErrorKind::PermissionNotGranted)
    );
    assert!(auth.user_list().await.unwrap().contains(&"u".to_owned()));
    assert!(auth.role_list().await.unwrap().contains(&"r".to_owned()));
    auth.user_change_password("u", "new").await.unwrap();
    auth.user_delete("u").await.unwrap();
    auth.role_delete("r").await.unwrap();
    assert_eq!(
        kind(auth.user_get("u").await),
        Some(ServerErrorKind::UserNotFound)
    );

    // AuthStatus exists from etcd 3.5 on; 3.4 says so clearly.
    let version = client.maintenance().status().await.unwrap().version;
    match auth.auth_status().await {
        Ok(status) => {
            assert!(!version.starts_with("3.4"), "3.4 has no AuthStatus");
            assert!(!status.enabled);
        }
        Err(err) => {
            assert!(version.starts_with("3.4"), "{version}: {err}");
            assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        }
    }
}

/// Users and roles made with etcdctl work with the crate, and those made by the crate show up
/// in etcdctl as they were made.
#[tokio::test]
async fn etcdctl_interop() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let as_root = format!("--user=root:{ROOT_PASSWORD}");
    let ctl = |args: &[&str]| {
        let mut all = vec![as_root.as_str()];
        all.extend_from_slice(args);
        let out = etcd.etcdctl(&all);
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ctl(&["role", "add", "from-ctl"]);
    ctl(&[
        "role",
        "grant-permission",
        "from-ctl",
        "read",
        "/ctl/",
        "--prefix=true",
    ]);
    ctl(&["user", "add", "ctl-user:pw", "--interactive=false"]);
    ctl(&["user", "grant-role", "ctl-user", "from-ctl"]);
    let perms = root.auth().role_get("from-ctl").await.unwrap();
    assert_eq!(
        perms,
        [Permission::new(
            PermissionKind::Read,
            KeyRange::prefix("/ctl/")
        )]
    );
    assert_eq!(
        root.auth().user_get("ctl-user").await.unwrap(),
        ["from-ctl"]
    );
    etcd.client_as("ctl-user", "pw")
        .await
        .kv()
        .get(KeyRange::prefix("/ctl/"))
        .await
        .unwrap();

    root.auth().role_add("from-crate").await.unwrap();
    root.auth()
        .role_grant_permission(
            "from-crate",
            Permission::new(PermissionKind::ReadWrite, KeyRange::range("k1", "k3")),
        )
        .await
        .unwrap();
    root.auth().user_add("crate-user", "pw").await.unwrap();
    root.auth()
        .user_grant_role("crate-user", "from-crate")
        .await
        .unwrap();
    let role = ctl(&["role", "get", "from-crate"]);
    assert!(role.contains("[k1, k3)"), "{role}");
    let user = ctl(&["user", "get", "crate-user"]);
    assert!(user.contains("from-crate"), "{user}");
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/services/gateway", rename_all = "kebab-case")]
struct Gateway {
    upstream: String,
    #[etcd(default = 8080)]
    listen_port: u16,
}

/// A read-only service role and an editor role for one config: the service loads, watches and
/// holds a live copy; its save is PermissionDenied and writes nothing; the editor's saves reach
/// the service's watch. A user with no permission gets PermissionDenied from watch at once.
#[tokio::test]
async fn least_privilege_for_a_config() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    let admin = Store::new(root.clone());
    for (role, access) in [
        ("gateway-service", Access::Read),
        ("gateway-editor", Access::ReadWrite),
    ] {
        root.auth().role_add(role).await.unwrap();
        admin.grant::<Gateway>(role, access).await.unwrap();
        root.auth().user_add(role, "pw").await.unwrap();
        root.auth().user_grant_role(role, role).await.unwrap();
    }
    assert_eq!(
        root.auth().role_get("gateway-service").await.unwrap(),
        [Permission::new(
            PermissionKind::Read,
            Gateway::schema().range()
        )]
    );
    // What the schema (and so `admin schema`) tells a person granting by hand with etcdctl
    // is every range `grant` grants, each with its kind.
    let text = Gateway::schema().to_string();
    for (role, line) in [
        ("gateway-service", "Access::Read"),
        ("gateway-editor", "Access::ReadWrite"),
    ] {
        let line = text.lines().find(|l| l.contains(line)).unwrap();
        for permission in root.auth().role_get(role).await.unwrap() {
            let range = format!(
                "[{}, {})",
                String::from_utf8_lossy(permission.range.start()),
                String::from_utf8_lossy(permission.range.range_end())
            );
            assert!(line.contains(&range), "{role}: {range} not in {line:?}");
            let kind = match permission.kind {
                PermissionKind::Read => "read on",
                _ => "readwrite on",
            };
            assert!(line.contains(kind), "{role}: {kind} not in {line:?}");
        }
    }
    admin
        .save(&Gateway {
            upstream: "http://a".into(),
            listen_port: 1,
        })
        .await
        .unwrap();
    root.kv()
        .put("/services/gateway2/secret", "not yours")
        .await
        .unwrap();

    let service = Store::new(etcd.client_as("gateway-service", "pw").await);
    let editor = Store::new(etcd.client_as("gateway-editor", "pw").await);
    let loaded = service.load_versioned::<Gateway>().await.unwrap();
    let mut watch = service.watch::<Gateway>().await.unwrap();
    let mut live = service.live::<Gateway>().await.unwrap();

    let refused = service
        .save(&Gateway {
            upstream: "http://evil".into(),
            listen_port: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.server_kind(),
        Some(ServerErrorKind::PermissionDenied)
    );
    // The message says which config it was about.
    assert!(
        refused.to_string().contains("/services/gateway/"),
        "{refused}"
    );
    // A preview of an edit reads only what the role may read; a set is refused.
    let edits: FieldEdits = [("listen_port", Some("9"))].into_iter().collect();
    let planned = service.plan_edit::<Gateway>(&edits).await.unwrap();
    assert_eq!(planned.after.listen_port, 9);
    let refused = service
        .set::<Gateway>(&[("listen_port", "9")], &ChangeNote::by("service"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.server_kind(),
        Some(ServerErrorKind::PermissionDenied)
    );
    let unchanged = root
        .kv()
        .get(KeyRange::prefix("/services/gateway/"))
        .await
        .unwrap();
    assert_eq!(
        unchanged.header.revision, loaded.revision,
        "the refused save wrote something"
    );
    assert_eq!(
        kind(service.client().kv().get("/services/gateway2/secret").await),
        Some(ServerErrorKind::PermissionDenied)
    );

    let revision = editor
        .save(&Gateway {
            upstream: "http://b".into(),
            listen_port: 3,
        })
        .await
        .unwrap();
    let update = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((update.revision, update.config.listen_port), (revision, 3));
    tokio::time::timeout(Duration::from_secs(10), live.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.get().upstream, "http://b");

    // No permission at all: refused at once, not a hang.
    root.auth().user_add("stranger", "pw").await.unwrap();
    let stranger = etcd.client_as("stranger", "pw").await;
    let started = std::time::Instant::now();
    let err = stranger
        .watch(KeyRange::prefix("/services/gateway/"))
        .await
        .unwrap_err();
    assert_eq!(
        err.server_kind(),
        Some(ServerErrorKind::PermissionDenied),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("etcd refused Watch prefix /services/gateway/"),
        "{err}"
    );
    assert_eq!(
        kind(Store::new(stranger).watch::<Gateway>().await),
        Some(ServerErrorKind::PermissionDenied)
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Revoking takes it back.
    admin.revoke::<Gateway>("gateway-service").await.unwrap();
    assert_eq!(
        kind(service.load::<Gateway>().await),
        Some(ServerErrorKind::PermissionDenied)
    );
}

/// With auth disabled again, clients without credentials work.
#[tokio::test]
async fn auth_disabled_again() {
    let etcd = Etcd::single().await;
    let root = etcd.enable_auth().await;
    root.kv().put("/k", "v").await.unwrap();
    assert_eq!(
        kind(etcd.client().await.kv().get("/k").await),
        Some(ServerErrorKind::UserEmpty)
    );
    root.auth().auth_disable().await.unwrap();
    let anyone = Client::connect(etcd.endpoints(), etcd.options())
        .await
        .unwrap();
    assert_eq!(anyone.kv().get("/k").await.unwrap().kvs[0].value, b"v");
    anyone.kv().put("/k", "w").await.unwrap();
}
