use super::*;

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rkube-ipam-{tag}-{}-{:x}",
        std::process::id(),
        crate::names::fnv1a(&format!("{:?}", std::time::SystemTime::now()))
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn allocates_distinct_addresses_and_is_idempotent_per_sandbox() {
    let dir = tempdir("distinct");
    let _c = Cleanup(dir.clone());
    let ipam = Ipam::open(&dir, "10.42.0.0/24".parse().unwrap()).unwrap();
    assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 42, 0, 1));
    let a = ipam.allocate("a").unwrap();
    let b = ipam.allocate("b").unwrap();
    assert_ne!(a, b);
    assert_eq!(ipam.allocate("a").unwrap(), a);
    assert_eq!(a, Ipv4Addr::new(10, 42, 0, 2));
    assert_eq!(b, Ipv4Addr::new(10, 42, 0, 3));
}

#[test]
fn survives_restart_without_double_assignment() {
    let dir = tempdir("restart");
    let _c = Cleanup(dir.clone());
    let range: Ipv4Cidr = "10.42.1.0/24".parse().unwrap();
    let first = Ipam::open(&dir, range).unwrap();
    let a = first.allocate("a").unwrap();
    let b = first.allocate("b").unwrap();
    // A crash between writing the temporary file and linking it leaves it behind.
    fs::write(first.dir.join(".tmp-999999"), "ghost").unwrap();
    drop(first);

    let second = Ipam::open(&dir, range).unwrap();
    assert_eq!(second.allocate("a").unwrap(), a);
    let c = second.allocate("c").unwrap();
    assert!(c != a && c != b);
    let owners: Vec<String> = second
        .allocations()
        .unwrap()
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(owners, vec!["a", "b", "c"]);
    assert!(!second.dir.join(".tmp-999999").exists());
}

#[test]
fn release_and_sweep_reclaim_addresses_without_immediate_reuse() {
    let dir = tempdir("sweep");
    let _c = Cleanup(dir.clone());
    let ipam = Ipam::open(&dir, "10.42.2.0/29".parse().unwrap()).unwrap();
    // .2 .. .6 are the five pod addresses of a /29.
    let ids = ["a", "b", "c", "d", "e"];
    let ips: Vec<_> = ids.iter().map(|id| ipam.allocate(id).unwrap()).collect();
    assert!(matches!(ipam.allocate("f"), Err(IpamError::Exhausted(_))));
    assert_eq!(ipam.release("b").unwrap(), Some(ips[1]));
    assert_eq!(ipam.release("b").unwrap(), None);
    let live: HashSet<String> = ["a", "e"].iter().map(|s| s.to_string()).collect();
    let freed = ipam.sweep(&live).unwrap();
    assert_eq!(freed.len(), 2);
    // Next-fit: after .6 comes .2 (taken by a), then .3.
    assert_eq!(ipam.allocate("g").unwrap(), ips[1]);
    assert_eq!(ipam.allocate("h").unwrap(), ips[2]);
}

#[test]
fn bad_input_changes_nothing() {
    let dir = tempdir("bad");
    let _c = Cleanup(dir.clone());
    assert!(matches!(
        Ipam::open(&dir, "10.42.0.0/31".parse().unwrap()),
        Err(IpamError::RangeTooSmall(_))
    ));
    let ipam = Ipam::open(&dir, "10.42.0.0/24".parse().unwrap()).unwrap();
    assert!(matches!(
        ipam.allocate(""),
        Err(IpamError::InvalidSandboxId(_))
    ));
    assert!(matches!(
        ipam.allocate("a\nb"),
        Err(IpamError::InvalidSandboxId(_))
    ));
    assert!(ipam.allocations().unwrap().is_empty());
}

#[test]
fn concurrent_allocations_never_collide() {
    let dir = tempdir("concurrent");
    let _c = Cleanup(dir.clone());
    let range: Ipv4Cidr = "10.42.3.0/24".parse().unwrap();
    // Two instances over one directory stand for two processes.
    let one = std::sync::Arc::new(Ipam::open(&dir, range).unwrap());
    let two = std::sync::Arc::new(Ipam::open(&dir, range).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let ipam = if t % 2 == 0 { one.clone() } else { two.clone() };
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| ipam.allocate(&format!("s{t}-{i}")).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Ipv4Addr> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}
