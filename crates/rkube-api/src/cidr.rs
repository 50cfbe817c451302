//! IPv4 CIDR ranges (cluster and service CIDRs, node pod CIDRs).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, e.g. `10.43.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// A CIDR that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR address: {0}")]
pub struct CidrError(pub String);

impl Ipv4Cidr {
    /// The network of `addr/prefix` (host bits are cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError(format!("{addr}/{prefix}")));
        }
        let mask = Self::mask_of(prefix);
        Ok(Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.addr)
    }

    /// The address at an offset from the network address.
    pub fn nth(&self, offset: u64) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(offset as u32))
    }

    /// The `i`-th subnet of a given prefix length (node pod CIDRs out of the cluster CIDR).
    pub fn subnet(&self, prefix: u8, i: u64) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if i >= count {
            return None;
        }
        let base = u32::from(self.addr) as u64 + i * (1u64 << (32 - prefix as u32));
        Ipv4Cidr::new(Ipv4Addr::from(base as u32), prefix).ok()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s.split_once('/').ok_or_else(|| CidrError(s.to_string()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError(s.to_string()))?;
        let prefix: u8 = p.parse().map_err(|_| CidrError(s.to_string()))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let c: Ipv4Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.43.0.0/16");
        assert!(c.contains("10.43.255.1".parse().unwrap()));
        assert!(!c.contains("10.44.0.1".parse().unwrap()));
        assert_eq!(c.nth(10).to_string(), "10.43.0.10");
        assert_eq!(c.size(), 65536);
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(cluster.subnet(24, 3).unwrap().to_string(), "10.42.3.0/24");
        assert!(cluster.subnet(24, 256).is_none());
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
    }
}
