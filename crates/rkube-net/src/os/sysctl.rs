//! Kernel parameters through `/proc/sys`, written from inside the right namespace
//! (`net.*` keys are per network namespace).

use std::path::PathBuf;

use super::Sysctl;
use crate::netns::{Netns, NetnsError};

/// Why a sysctl could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The key has characters that cannot name a sysctl.
    #[error("invalid sysctl key {0:?}")]
    InvalidKey(String),
    /// Writing the file failed.
    #[error("cannot set sysctl {key}: {source}")]
    Write {
        /// The key.
        key: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// Writes `/proc/sys` in a namespace.
#[derive(Clone, Debug)]
pub struct ProcSysctl {
    netns: Netns,
}

impl ProcSysctl {
    /// Sysctls of `netns`.
    pub fn new(netns: Netns) -> Self {
        Self { netns }
    }
}

impl Sysctl for ProcSysctl {
    fn set(&self, key: &str, value: &str) -> Result<(), SysctlError> {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(SysctlError::InvalidKey(key.to_string()));
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let value = value.to_string();
        let key = key.to_string();
        self.netns.run(move || {
            std::fs::write(&path, value).map_err(|source| SysctlError::Write { key, source })
        })?
    }
}
