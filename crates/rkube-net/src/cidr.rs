//! IPv4 prefixes (`10.42.0.0/24`): parsing, membership and host enumeration.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network prefix whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a string is not an IPv4 prefix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    /// The text is not `a.b.c.d/len`.
    #[error("{0:?} is not an IPv4 prefix like 10.42.0.0/24")]
    Syntax(String),
    /// The length is above 32.
    #[error("prefix length {0} is above 32")]
    Length(u8),
    /// Bits are set beyond the prefix length.
    #[error("{0} has host bits set (did you mean {1}?)")]
    HostBits(String, Ipv4Cidr),
}

impl Ipv4Cidr {
    /// A prefix from its network address and length; host bits must be zero.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Length(prefix));
        }
        let cidr = Self::containing(addr, prefix);
        if cidr.addr != addr {
            return Err(CidrError::HostBits(format!("{addr}/{prefix}"), cidr));
        }
        Ok(cidr)
    }

    /// The prefix of length `prefix` (at most 32) that contains `addr`.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        }
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `other` lies wholly inside this prefix.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// The number of addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`th address of the prefix (0 is the network address), if inside it.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.addr) + n as u32))
    }

    /// The broadcast (last) address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(s.to_string());
        let (ip, len) = s.trim().split_once('/').ok_or_else(syntax)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Self::new(ip, len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_membership() {
        let c: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert!(c.contains("10.42.255.1".parse().unwrap()));
        assert!(!c.contains("10.43.0.1".parse().unwrap()));
        assert!(c.covers(&"10.42.3.0/24".parse().unwrap()));
        assert!(!c.covers(&"10.0.0.0/8".parse().unwrap()));
        assert_eq!(c.size(), 65536);
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 42, 255, 255));
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 42, 0, 1)));
        assert_eq!(c.to_string(), "10.42.0.0/16");
    }

    #[test]
    fn rejects_bad_prefixes() {
        assert!(matches!(
            "10.42.0.1/24".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits(..))
        ));
        assert!(matches!(
            "10.42.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::Length(33))
        ));
        assert!(matches!(
            "10.42.0.0".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "x/8".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
    }
}
