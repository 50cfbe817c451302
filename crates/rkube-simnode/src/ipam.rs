//! Pod IPs of one simulated node, out of its pod CIDR: the network address and the
//! first address (the gateway on a real node) are never handed out, nor the last.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rkube_api::cidr::Ipv4Cidr;

/// The addresses in use on one node.
#[derive(Debug, Clone)]
pub struct PodIps {
    cidr: Ipv4Cidr,
    used: BTreeSet<u64>,
    next: u64,
}

impl PodIps {
    pub fn new(cidr: Ipv4Cidr) -> PodIps {
        PodIps {
            cidr,
            used: BTreeSet::new(),
            next: 2,
        }
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    fn usable(&self, offset: u64) -> bool {
        offset >= 2 && offset + 1 < self.cidr.size()
    }

    /// The next free address, if any is left.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.cidr.size();
        if size < 4 {
            return None;
        }
        for k in 0..size {
            let offset = 2 + (self.next - 2 + k) % (size - 3);
            if !self.used.contains(&offset) {
                self.used.insert(offset);
                self.next = offset + 1;
                return Some(self.cidr.nth(offset));
            }
        }
        None
    }

    /// Marks an address as used (a pod that already has it).
    pub fn occupy(&mut self, ip: Ipv4Addr) {
        if self.cidr.contains(ip) {
            let offset = u64::from(u32::from(ip) - u32::from(self.cidr.network()));
            if self.usable(offset) {
                self.used.insert(offset);
            }
        }
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        if self.cidr.contains(ip) {
            let offset = u64::from(u32::from(ip) - u32::from(self.cidr.network()));
            self.used.remove(&offset);
        }
    }

    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_inside_the_cidr_without_reuse() {
        let mut ips = PodIps::new("10.42.7.0/24".parse().unwrap());
        ips.occupy("10.42.7.2".parse().unwrap());
        assert_eq!(ips.allocate(), Some("10.42.7.3".parse().unwrap()));
        let mut all = BTreeSet::new();
        while let Some(ip) = ips.allocate() {
            assert!(all.insert(ip));
        }
        assert_eq!(ips.in_use(), 253, ".2 to .254");
        assert!(!all.contains(&"10.42.7.1".parse().unwrap()));
        assert!(!all.contains(&"10.42.7.255".parse().unwrap()));
        ips.release("10.42.7.100".parse().unwrap());
        assert_eq!(ips.allocate(), Some("10.42.7.100".parse().unwrap()));
    }
}
