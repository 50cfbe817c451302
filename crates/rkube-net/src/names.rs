//! Stable short names derived from longer ones (interface names, nftables chains).
//!
//! Interface names are limited to 15 bytes, so a sandbox's veth is named from a hash of
//! its id; the hash must not change between releases, which rules out `std`'s hasher.

/// FNV-1a, 64 bits: stable across builds and platforms.
pub fn fnv1a(data: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `n` base-32 characters (`a-z2-7`, upper-cased) of the hash of `data`, at most 12.
pub fn short_hash(data: &str, n: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h = fnv1a(data);
    (0..n.min(12))
        .map(|_| {
            let c = ALPHABET[(h & 31) as usize] as char;
            h >>= 5;
            c
        })
        .collect()
}

/// The host-side veth name of a sandbox: `veth` and 11 hex digits of its hash.
pub fn host_veth(sandbox_id: &str) -> String {
    format!("veth{:011x}", fnv1a(sandbox_id) & 0xfff_ffff_ffff)
}

/// The temporary name of a sandbox's pod-side veth before it moves into the pod.
pub fn temp_peer(sandbox_id: &str) -> String {
    format!("rkp{:012x}", fnv1a(sandbox_id) & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_fit_an_interface() {
        assert_eq!(host_veth("abc"), host_veth("abc"));
        assert_ne!(host_veth("abc"), host_veth("abd"));
        assert_eq!(host_veth("abc").len(), 15);
        assert_eq!(temp_peer("abc").len(), 15);
        // Pinned so that a release which changes the hash is caught: it would orphan
        // the veths of running pods.
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(short_hash("x", 8).len(), 8);
    }
}
