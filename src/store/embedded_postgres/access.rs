//! Whether the embedded PostgreSQL can use its data folder, checked before anything is created:
//! the folder belongs to the OS user PostgreSQL runs as, and, as root (PostgreSQL then runs as
//! the `postgres` user), that user can enter every folder above it. A clone under `/root` fails
//! here with a message naming `FLUID_WEBHOOKS_DATABASE__EMBEDDED_DATA_DIR`, not half-way through
//! `initdb` with "Permission denied".

use std::{os::unix::fs::MetadataExt, path::Path};

use nix::unistd::{Gid, Uid, User};

/// The variable that moves the data folder.
const DATA_DIR_VAR: &str = "FLUID_WEBHOOKS_DATABASE__EMBEDDED_DATA_DIR";

/// The name of an OS user, or its number.
fn name_of(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(
            || format!("uid {uid}"),
            |u| format!("`{}` (uid {uid})", u.name),
        )
}

/// Whether a user (uid, primary gid) may enter a folder with this mode, owner and group.
pub(super) fn can_enter(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let bit = if owner == uid {
        0o100
    } else if group == gid {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

/// Checks the data folder for the server's OS user: `run_as` when we are root, else ourselves.
pub(super) fn check(data_dir: &Path, run_as: Option<&User>) -> anyhow::Result<()> {
    let (uid, gid) = match run_as {
        Some(user) => (user.uid.as_raw(), user.gid.as_raw()),
        None => (Uid::effective().as_raw(), Gid::effective().as_raw()),
    };
    let server = name_of(uid);
    let runs_as = if run_as.is_some() {
        format!("as root, PostgreSQL runs as {server}")
    } else {
        format!("PostgreSQL runs as this process's user, {server}")
    };
    if let Ok(meta) = std::fs::metadata(data_dir)
        && meta.uid() != uid
    {
        anyhow::bail!(
            "the embedded PostgreSQL's data folder {} belongs to {}, but {runs_as}: it was made by \
             another OS user (as root, or the other way round). Run as that user, or set {DATA_DIR_VAR} \
             to another folder (or set DATABASE_URL)",
            data_dir.display(),
            name_of(meta.uid())
        );
    }
    if run_as.is_none() {
        return Ok(());
    }
    for folder in data_dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(folder) else {
            continue; // created by us, readable by all
        };
        if !can_enter(meta.mode(), meta.uid(), meta.gid(), uid, gid) {
            anyhow::bail!(
                "{runs_as}, which cannot enter {} (mode {:o}, owned by {}), so it cannot use the data \
                 folder {}. Set {DATA_DIR_VAR} to a folder it can reach (e.g. /var/lib/fluid-webhooks), \
                 run as a normal user, or set DATABASE_URL",
                folder.display(),
                meta.mode() & 0o7777,
                name_of(meta.uid()),
                data_dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entering_a_folder_needs_the_execute_bit_of_the_class_the_user_falls_in() {
        let (postgres, group) = (110, 120);
        // /root: 0700 root:root.
        assert!(!can_enter(0o700, 0, 0, postgres, group));
        assert!(can_enter(0o755, 0, 0, postgres, group));
        assert!(can_enter(0o711, 0, 0, postgres, group));
        // Its own, its group's, or others' bit, whichever applies, and only that one.
        assert!(can_enter(0o700, postgres, 0, postgres, group));
        assert!(!can_enter(0o077, postgres, group, postgres, group));
        assert!(can_enter(0o710, 0, group, postgres, group));
        assert!(!can_enter(0o701, 0, group, postgres, group));
        assert!(can_enter(0o000, 5, 5, 0, 0), "root enters anything");
    }
}
