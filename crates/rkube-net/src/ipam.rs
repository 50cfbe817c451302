//! Address allocation from a node's podCIDR, persisted on disk.
//!
//! One file per allocated address (`<dir>/<cidr>/<ip>`) holds the sandbox id. A file
//! is created by writing a temporary file and hard-linking it to the address name:
//! the link is atomic and fails if the address is taken, so neither a crash nor a
//! second process can hand out an address twice, and a crash leaves at worst a
//! temporary file (removed at open) or an allocation for a sandbox that never came
//! up (reclaimed by [`Ipam::sweep`]).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cidr::Ipv4Cidr;

/// Why an allocation failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every address of the range is taken.
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Cidr),
    /// The range has no room for a gateway and pods.
    #[error("pod CIDR {0} is too small (needs at least a /30)")]
    RangeTooSmall(Ipv4Cidr),
    /// The sandbox id is empty, too long, or has control characters.
    #[error("invalid sandbox id {0:?}")]
    InvalidSandboxId(String),
    /// Reading or writing the allocation directory failed.
    #[error("IPAM store {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Allocations of one pod CIDR, kept under a directory.
pub struct Ipam {
    dir: PathBuf,
    range: Ipv4Cidr,
    /// Serialises this process's allocations; other processes are kept out by the
    /// exclusive hard link.
    lock: Mutex<()>,
}

const LAST_FILE: &str = "last-reserved";
const TMP_PREFIX: &str = ".tmp-";

impl Ipam {
    /// Opens (creating if needed) the allocations of `range` under `dir`, and removes
    /// temporary files a crash may have left.
    pub fn open(dir: impl AsRef<Path>, range: Ipv4Cidr) -> Result<Self, IpamError> {
        if range.prefix() > 30 {
            return Err(IpamError::RangeTooSmall(range));
        }
        let dir = dir
            .as_ref()
            .join(format!("{}-{}", range.addr(), range.prefix()));
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir,
            range,
            lock: Mutex::new(()),
        })
    }

    /// The pod CIDR.
    pub fn range(&self) -> Ipv4Cidr {
        self.range
    }

    /// The gateway: the first host address, kept for the node bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.range.nth(1).expect("range holds at least 4 addresses")
    }

    /// The address of `sandbox_id`, allocating one if it has none. Calling it again
    /// for the same sandbox returns the same address.
    pub fn allocate(&self, sandbox_id: &str) -> Result<Ipv4Addr, IpamError> {
        validate_id(sandbox_id)?;
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = self.find(sandbox_id)? {
            return Ok(ip);
        }
        // Next-fit from the last address handed out, so a released address is not
        // reused at once (a late packet for the old pod must not reach a new one).
        let first = 2u64; // .0 is the network, .1 the gateway
        let last = self.range.size() - 2; // the broadcast address is left out
        let span = last - first + 1;
        let start = self
            .last_reserved()
            .map(|ip| u64::from(u32::from(ip) - u32::from(self.range.addr())))
            .filter(|n| (first..=last).contains(n))
            .map_or(first, |n| n + 1);
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}-{seq}", std::process::id()));
        write_synced(&tmp, sandbox_id.as_bytes())?;
        let result = (0..span)
            .map(|i| first + (start - first + i) % span)
            .find_map(|n| {
                let ip = self.range.nth(n)?;
                match fs::hard_link(&tmp, self.dir.join(ip.to_string())) {
                    Ok(()) => Some(Ok(ip)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    Err(e) => Some(Err(io(&self.dir)(e))),
                }
            })
            .unwrap_or(Err(IpamError::Exhausted(self.range)));
        let _ = fs::remove_file(&tmp);
        let ip = result?;
        sync_dir(&self.dir)?;
        let _ = write_synced(&self.dir.join(LAST_FILE), ip.to_string().as_bytes());
        Ok(ip)
    }

    /// Frees the address of `sandbox_id`; returns it, or `None` if it had none.
    pub fn release(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ip) = self.find(sandbox_id)? else {
            return Ok(None);
        };
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        sync_dir(&self.dir)?;
        Ok(Some(ip))
    }

    /// Every allocation: address and sandbox id, by address.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let Ok(ip) = entry.file_name().to_string_lossy().parse::<Ipv4Addr>() else {
                continue;
            };
            let owner = match fs::read_to_string(entry.path()) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&entry.path())(e)),
            };
            out.push((ip, owner));
        }
        out.sort();
        Ok(out)
    }

    /// Frees the addresses of sandboxes not in `live`; returns what it freed.
    pub fn sweep(&self, live: &HashSet<String>) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut freed = Vec::new();
        for (ip, owner) in self.allocations()? {
            if !live.contains(&owner) {
                let path = self.dir.join(ip.to_string());
                fs::remove_file(&path).map_err(io(&path))?;
                freed.push((ip, owner));
            }
        }
        if !freed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(freed)
    }

    fn find(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self
            .allocations()?
            .into_iter()
            .find(|(_, owner)| owner == sandbox_id)
            .map(|(ip, _)| ip))
    }

    fn last_reserved(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(LAST_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|ip| self.range.contains(*ip))
    }
}

fn validate_id(id: &str) -> Result<(), IpamError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(IpamError::InvalidSandboxId(id.to_string()));
    }
    Ok(())
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), IpamError> {
    let mut f = fs::File::create(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), IpamError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests;
