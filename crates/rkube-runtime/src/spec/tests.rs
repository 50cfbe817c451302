use super::*;
use crate::config::{Capabilities, UserConfig};

fn img() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["default".into()],
        env: vec!["PATH=/bin".into(), "A=image".into()],
        user: "app".into(),
        ..Default::default()
    }
}

#[test]
fn command_and_args_merge_as_kubernetes_says() {
    let mut c = ContainerConfig::default();
    assert_eq!(process_args(&c, &img()).unwrap(), ["/entry", "default"]);
    c.args = vec!["x".into()];
    assert_eq!(process_args(&c, &img()).unwrap(), ["/entry", "x"]);
    c.command = vec!["/bin/sh".into()];
    assert_eq!(process_args(&c, &img()).unwrap(), ["/bin/sh", "x"]);
    c.args.clear();
    assert_eq!(process_args(&c, &img()).unwrap(), ["/bin/sh"]);
    assert!(process_args(&ContainerConfig::default(), &ImageConfig::default()).is_err());
}

#[test]
fn env_overrides_image() {
    let c = ContainerConfig {
        env: vec![("A".into(), "pod".into()), ("B".into(), "2".into())],
        ..Default::default()
    };
    assert_eq!(environment(&c, &img(), None), ["PATH=/bin", "A=pod", "B=2"]);
    assert!(environment(&c, &ImageConfig::default(), Some("h"))[0].starts_with("PATH=/usr/local"));
}

#[test]
fn users_from_image_files() {
    let d = crate::testutil::TempDir::new();
    std::fs::create_dir_all(d.0.join("etc")).unwrap();
    std::fs::write(
        d.0.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        d.0.join("etc/group"),
        "root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n",
    )
    .unwrap();
    let mut c = ContainerConfig::default();
    assert_eq!(
        resolve_user(&c, &img(), &d.0).unwrap(),
        (1000, 1001, vec![2000])
    );
    c.user = UserConfig {
        uid: Some(5),
        gid: Some(6),
        supplemental_groups: vec![7],
    };
    assert_eq!(resolve_user(&c, &img(), &d.0).unwrap(), (5, 6, vec![7]));
    let bad = ImageConfig {
        user: "nobody-here".into(),
        ..Default::default()
    };
    assert!(resolve_user(&ContainerConfig::default(), &bad, &d.0).is_err());
}

#[test]
fn capability_add_drop() {
    let mut c = ContainerConfig {
        capabilities: Capabilities {
            add: vec!["net_admin".into()],
            drop: vec!["CAP_KILL".into(), "chown".into()],
        },
        ..Default::default()
    };
    let caps = capabilities(&c).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(!caps.contains(&"CAP_KILL".to_string()) && !caps.contains(&"CAP_CHOWN".to_string()));
    c.capabilities.drop = vec!["ALL".into()];
    assert_eq!(capabilities(&c).unwrap(), Vec::<String>::new());
    c.capabilities.add = vec!["bogus".into()];
    assert!(capabilities(&c).is_err());
}

#[test]
fn spec_has_limits_and_sandbox_namespaces() {
    let d = crate::testutil::TempDir::new();
    let mut c = ContainerConfig {
        command: vec!["/bin/true".into()],
        ..Default::default()
    };
    c.resources.cpu_quota = Some(50_000);
    c.resources.memory_limit = Some(64 << 20);
    let sb = SandboxParts {
        netns: Some("/run/x/net".into()),
        ..Default::default()
    };
    let image = ImageConfig::default();
    let spec = build(&SpecInput {
        id: "abc",
        config: &c,
        image: &image,
        rootfs: &d.0,
        sandbox: &sb,
        cgroup_parent: "/rkube",
    })
    .unwrap();
    assert_eq!(spec["linux"]["cgroupsPath"], "/rkube/abc");
    assert_eq!(spec["linux"]["resources"]["cpu"]["quota"], 50_000);
    assert_eq!(spec["linux"]["resources"]["cpu"]["period"], 100_000);
    assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
    let ns = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&json!({"type": "network", "path": "/run/x/net"})));
}
