//! Least privilege for configs: grant a role exactly the keys one config struct owns.

use super::{EtcdConfig, Store};
use crate::client::ResponseHeader;
use crate::client::{Permission, PermissionKind};
use crate::error::{Result, ServerErrorKind};
use crate::key_range::KeyRange;

/// What a role may do with a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Load, watch and `live`: what a service needs.
    Read,
    /// Read, write the fleet records under `T::PREFIX + ".fleet/"` and read the rollout
    /// area `T::PREFIX + ".rollout/"`: what a service that reports
    /// ([`LiveOptions::report_as`](crate::LiveOptions::report_as)), and so takes part in
    /// rollouts, needs. It still cannot change the config.
    ReadAndReport,
    /// Also save and delete, write change notes under `T::PREFIX + ".notes/"`, read the
    /// fleet records and drive rollouts (`T::PREFIX + ".rollout/"`): what the tool that edits
    /// the config needs (every command of the command line, `--wait` and `rollout` included).
    ReadWrite,
}

impl Store {
    /// Grants `role` access to exactly the keys `T` owns in this store: the prefix range
    /// `namespace + T::PREFIX + "/"` as etcd holds it (see [`Store::prefix_of`]; permissions
    /// are never namespaced). One RoleGrantPermission call, made by a user allowed to manage
    /// auth (root).
    ///
    /// With [`Access::Read`] a user holding the role can `load`, `watch` and `live` the config,
    /// and its `save` fails with `PermissionDenied` and writes nothing.
    pub async fn grant<T: EtcdConfig>(&self, role: &str, access: Access) -> Result<ResponseHeader> {
        let auth = self.client().auth();
        let fleet = KeyRange::prefix(self.fleet_prefix_of::<T>());
        let notes = KeyRange::prefix(self.notes_prefix_of::<T>());
        let rollout = KeyRange::prefix(self.rollout_prefix_of::<T>());
        let kind = match access {
            Access::Read => PermissionKind::Read,
            Access::ReadAndReport => {
                let records = Permission::new(PermissionKind::ReadWrite, fleet);
                auth.role_grant_permission(role, records).await?;
                let rollouts = Permission::new(PermissionKind::Read, rollout);
                auth.role_grant_permission(role, rollouts).await?;
                PermissionKind::Read
            }
            Access::ReadWrite => {
                let notes = Permission::new(PermissionKind::ReadWrite, notes);
                auth.role_grant_permission(role, notes).await?;
                let rollouts = Permission::new(PermissionKind::ReadWrite, rollout);
                auth.role_grant_permission(role, rollouts).await?;
                let records = Permission::new(PermissionKind::Read, fleet);
                auth.role_grant_permission(role, records).await?;
                PermissionKind::ReadWrite
            }
        };
        let range = KeyRange::prefix(self.prefix_of::<T>());
        auth.role_grant_permission(role, Permission::new(kind, range))
            .await
    }

    /// Takes back what [`grant`](Self::grant) gave `role` on `T` (whichever access it was,
    /// the fleet records, change notes and rollout area included).
    pub async fn revoke<T: EtcdConfig>(&self, role: &str) -> Result<ResponseHeader> {
        let auth = self.client().auth();
        let fleet = KeyRange::prefix(self.fleet_prefix_of::<T>());
        let notes = KeyRange::prefix(self.notes_prefix_of::<T>());
        let rollout = KeyRange::prefix(self.rollout_prefix_of::<T>());
        for range in [fleet, notes, rollout] {
            match auth.role_revoke_permission(role, range).await {
                Err(err) if err.server_kind() != Some(ServerErrorKind::PermissionNotGranted) => {
                    return Err(err)
                }
                _ => {}
            }
        }
        auth.role_revoke_permission(role, KeyRange::prefix(self.prefix_of::<T>()))
            .await
    }
}
