//! Least privilege for configs: grant a role exactly the keys one config struct owns.

use super::{EtcdConfig, Store};
use crate::client::ResponseHeader;
use crate::client::{Permission, PermissionKind};
use crate::error::Result;

/// What a role may do with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Load, watch and `live`: what a service needs.
    Read,
    /// Also save and delete: what the tool that edits the config needs.
    ReadWrite,
}

impl Store {
    /// Grants `role` access to exactly the keys `T` owns in this store: the prefix range
    /// `namespace + T::PREFIX + "/"` (see [`Store::range_of`]). One RoleGrantPermission call,
    /// made by a user allowed to manage auth (root).
    ///
    /// With [`Access::Read`] a user holding the role can `load`, `watch` and `live` the config,
    /// and its `save` fails with `PermissionDenied` and writes nothing.
    pub async fn grant<T: EtcdConfig>(&self, role: &str, access: Access) -> Result<ResponseHeader> {
        let kind = match access {
            Access::Read => PermissionKind::Read,
            Access::ReadWrite => PermissionKind::ReadWrite,
        };
        self.client()
            .auth()
            .role_grant_permission(role, Permission::new(kind, self.range_of::<T>()))
            .await
    }

    /// Takes back what [`grant`](Self::grant) gave `role` on `T` (whichever access it was).
    pub async fn revoke<T: EtcdConfig>(&self, role: &str) -> Result<ResponseHeader> {
        self.client()
            .auth()
            .role_revoke_permission(role, self.range_of::<T>())
            .await
    }
}
