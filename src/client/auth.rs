//! etcd's Auth service: enabling auth, users, roles, and permissions over key ranges.

use super::rpc::Rpc;
use super::{Client, ResponseHeader};
use crate::error::{Error, Result};
use crate::key_range::KeyRange;
use crate::proto::{authpb, etcdserverpb as pb};

/// Handle to the Auth service of a [`Client`].
///
/// A role is granted [`Read`](PermissionKind::Read), [`Write`](PermissionKind::Write) or
/// [`ReadWrite`](PermissionKind::ReadWrite) on a [`KeyRange`]; a user holds roles. etcd checks
/// a request against the union of the ranges of every role the user holds, so grants of
/// `[k1, k3)` and `[k2, k4)` together allow a read of `[k1, k4)`.
///
/// ```no_run
/// # async fn demo(root: etcd_config::Client) -> etcd_config::Result<()> {
/// use etcd_config::client::{Permission, PermissionKind};
/// use etcd_config::KeyRange;
///
/// let auth = root.auth();
/// auth.role_add("gateway-reader").await?;
/// auth.role_grant_permission(
///     "gateway-reader",
///     Permission::new(PermissionKind::Read, KeyRange::prefix("/services/gateway/")),
/// )
/// .await?;
/// auth.user_add("gateway", "s3cret").await?;
/// auth.user_grant_role("gateway", "gateway-reader").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Auth {
    client: Client,
}

/// What a permission allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionKind {
    /// Range reads and watches.
    Read,
    /// Puts and deletes.
    Write,
    /// Both.
    ReadWrite,
}

/// Access of one kind to one range of keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Permission {
    /// What is allowed.
    pub kind: PermissionKind,
    /// On which keys.
    pub range: KeyRange,
}

impl Permission {
    /// `kind` access to `range`.
    pub fn new(kind: PermissionKind, range: impl Into<KeyRange>) -> Self {
        Permission {
            kind,
            range: range.into(),
        }
    }
}

impl From<authpb::Permission> for Permission {
    fn from(p: authpb::Permission) -> Self {
        let kind = match authpb::permission::Type::try_from(p.perm_type) {
            Ok(authpb::permission::Type::Write) => PermissionKind::Write,
            Ok(authpb::permission::Type::Readwrite) => PermissionKind::ReadWrite,
            _ => PermissionKind::Read,
        };
        Permission {
            kind,
            range: KeyRange::from_raw(p.key, p.range_end),
        }
    }
}

/// Whether auth is on, as etcd 3.5 and later report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthStatus {
    /// True if auth is enabled.
    pub enabled: bool,
    /// The auth store's revision: it grows with every change to users, roles or permissions.
    pub auth_revision: u64,
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} name is empty")));
    }
    Ok(())
}

fn check_range(range: &KeyRange) -> Result<()> {
    if range.start().is_empty() {
        return Err(Error::invalid(format!(
            "permission range {range} has an empty start key"
        )));
    }
    if range.is_empty() {
        return Err(Error::invalid(format!(
            "permission range {range} is empty: its end must be after its start"
        )));
    }
    Ok(())
}

/// An auth answer that carries nothing but its header.
trait HeaderOnly {
    fn into_header(self) -> Option<pb::ResponseHeader>;
}

macro_rules! header_only {
    ($($response:ident),* $(,)?) => {
        $(impl HeaderOnly for pb::$response {
            fn into_header(self) -> Option<pb::ResponseHeader> {
                self.header
            }
        })*
    };
}

header_only!(
    AuthEnableResponse,
    AuthDisableResponse,
    AuthUserAddResponse,
    AuthUserDeleteResponse,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse
);

impl Auth {
    /// Sends a call whose answer is its header alone (one round trip).
    async fn change<R>(&self, request: R) -> Result<ResponseHeader>
    where
        R: Rpc,
        R::Response: HeaderOnly,
    {
        Ok(self.client.call(request).await?.into_header().into())
    }

    pub(crate) fn new(client: Client) -> Self {
        Auth { client }
    }

    /// Turns auth on. etcd requires a `root` user holding the `root` role first
    /// ([`ServerErrorKind::RootUserNotExist`](crate::ServerErrorKind::RootUserNotExist)).
    /// Clients without credentials are refused from then on.
    pub async fn auth_enable(&self) -> Result<ResponseHeader> {
        self.change(pb::AuthEnableRequest {}).await
    }

    /// Turns auth off (root only).
    pub async fn auth_disable(&self) -> Result<ResponseHeader> {
        self.change(pb::AuthDisableRequest {}).await
    }

    /// Whether auth is enabled. etcd 3.4 has no such call: there this is
    /// [`crate::Error::Unsupported`].
    pub async fn auth_status(&self) -> Result<AuthStatus> {
        let r = self
            .client
            .call(pb::AuthStatusRequest {})
            .await
            .map_err(|err| err.unsupported_as("AuthStatus (etcd 3.5 and later)"))?;
        Ok(AuthStatus {
            enabled: r.enabled,
            auth_revision: r.auth_revision,
        })
    }

    /// Checks a user's password and returns a token for it. The client authenticates by itself
    /// when given [`ConnectOptions::with_user`](crate::ConnectOptions::with_user); this is for
    /// checking credentials.
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<String> {
        check_name("user", user)?;
        let request = pb::AuthenticateRequest {
            name: user.to_owned(),
            password: password.to_owned(),
        };
        let r = self.client.transport().call_without_token(request).await?;
        Ok(r.token)
    }

    /// Adds a user with a password.
    pub async fn user_add(&self, user: &str, password: &str) -> Result<ResponseHeader> {
        check_name("user", user)?;
        self.change(pb::AuthUserAddRequest {
            name: user.to_owned(),
            password: password.to_owned(),
            options: Some(authpb::UserAddOptions { no_password: false }),
            hashed_password: String::new(),
        })
        .await
    }

    /// Deletes a user.
    pub async fn user_delete(&self, user: &str) -> Result<ResponseHeader> {
        check_name("user", user)?;
        let name = user.to_owned();
        self.change(pb::AuthUserDeleteRequest { name }).await
    }

    /// The roles a user holds.
    pub async fn user_get(&self, user: &str) -> Result<Vec<String>> {
        check_name("user", user)?;
        let name = user.to_owned();
        let r = self.client.call(pb::AuthUserGetRequest { name }).await?;
        Ok(r.roles)
    }

    /// Every user's name.
    pub async fn user_list(&self) -> Result<Vec<String>> {
        let r = self.client.call(pb::AuthUserListRequest {}).await?;
        Ok(r.users)
    }

    /// Sets a user's password.
    pub async fn user_change_password(&self, user: &str, password: &str) -> Result<ResponseHeader> {
        check_name("user", user)?;
        self.change(pb::AuthUserChangePasswordRequest {
            name: user.to_owned(),
            password: password.to_owned(),
            hashed_password: String::new(),
        })
        .await
    }

    /// Gives a user a role.
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<ResponseHeader> {
        check_name("user", user)?;
        check_name("role", role)?;
        let (user, role) = (user.to_owned(), role.to_owned());
        self.change(pb::AuthUserGrantRoleRequest { user, role })
            .await
    }

    /// Takes a role from a user.
    pub async fn user_revoke_role(&self, user: &str, role: &str) -> Result<ResponseHeader> {
        check_name("user", user)?;
        check_name("role", role)?;
        let (name, role) = (user.to_owned(), role.to_owned());
        self.change(pb::AuthUserRevokeRoleRequest { name, role })
            .await
    }

    /// Adds a role with no permissions.
    pub async fn role_add(&self, role: &str) -> Result<ResponseHeader> {
        check_name("role", role)?;
        let name = role.to_owned();
        self.change(pb::AuthRoleAddRequest { name }).await
    }

    /// Deletes a role (and takes it from every user).
    pub async fn role_delete(&self, role: &str) -> Result<ResponseHeader> {
        check_name("role", role)?;
        let role = role.to_owned();
        self.change(pb::AuthRoleDeleteRequest { role }).await
    }

    /// A role's permissions, each range as a person would have written it (one key, prefix,
    /// from-key, all keys, or a plain range; see [`KeyRange::kind`]).
    pub async fn role_get(&self, role: &str) -> Result<Vec<Permission>> {
        check_name("role", role)?;
        let role = role.to_owned();
        let r = self.client.call(pb::AuthRoleGetRequest { role }).await?;
        Ok(r.perm.into_iter().map(Permission::from).collect())
    }

    /// Every role's name.
    pub async fn role_list(&self) -> Result<Vec<String>> {
        let r = self.client.call(pb::AuthRoleListRequest {}).await?;
        Ok(r.roles)
    }

    /// Grants a role access to a range of keys. A range that selects nothing is refused before
    /// anything is sent.
    pub async fn role_grant_permission(
        &self,
        role: &str,
        permission: Permission,
    ) -> Result<ResponseHeader> {
        check_name("role", role)?;
        check_range(&permission.range)?;
        let perm_type = match permission.kind {
            PermissionKind::Read => authpb::permission::Type::Read,
            PermissionKind::Write => authpb::permission::Type::Write,
            PermissionKind::ReadWrite => authpb::permission::Type::Readwrite,
        };
        let (key, range_end) = permission.range.into_parts();
        self.change(pb::AuthRoleGrantPermissionRequest {
            name: role.to_owned(),
            perm: Some(authpb::Permission {
                perm_type: perm_type as i32,
                key,
                range_end,
            }),
        })
        .await
    }

    /// Removes a role's permission on exactly `range` (as it was granted).
    pub async fn role_revoke_permission(
        &self,
        role: &str,
        range: impl Into<KeyRange>,
    ) -> Result<ResponseHeader> {
        check_name("role", role)?;
        let range = range.into();
        check_range(&range)?;
        let (key, range_end) = range.into_parts();
        self.change(pb::AuthRoleRevokePermissionRequest {
            role: role.to_owned(),
            key,
            range_end,
        })
        .await
    }
}
