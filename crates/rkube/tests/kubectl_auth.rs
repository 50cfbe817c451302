//! Who a request runs as, through the real kubectl: RBAC answers (`auth can-i`,
//! Forbidden messages), impersonation (`--as`, `--as-group`, `--as-uid` and the
//! kubeconfig's `as-user-extra`), `auth whoami`, and CertificateSigningRequests,
//! which record their requester and are approved or denied through `approval`.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::Cluster;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn csr_fixture() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kubectl-txtar/hack/testdata/csr.yml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The admin kubeconfig acting as another user, as a kubeconfig's `as`, `as-uid`,
/// `as-groups` and `as-user-extra` fields ask (kubectl 1.33 has no `--as-user-extra`).
fn impersonating_kubeconfig(c: &Cluster, extra: &str) -> PathBuf {
    let admin = std::fs::read_to_string(&c.kubeconfig).expect("admin kubeconfig");
    let with = admin.replacen("  user:\n", &format!("  user:\n{extra}"), 1);
    assert_ne!(with, admin, "no user entry in the admin kubeconfig");
    let path = c.data_dir().join("impersonating.kubeconfig");
    std::fs::write(&path, with).expect("kubeconfig");
    path
}

#[test]
fn rbac_answers_can_i_and_refuses_with_upstreams_message() {
    let c = Cluster::start();
    let out = c.kubectl(&["auth", "can-i", "list", "pods", "--as=bob"]);
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "no\n");
    let err = c.kubectl_err(&["get", "pods", "--as=bob"]);
    assert!(
        err.contains(
            "Error from server (Forbidden): pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    let err = c.kubectl_err(&["get", "deployments", "web", "--as=bob"]);
    assert!(
        err.contains(
            "deployments.apps \"web\" is forbidden: User \"bob\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"default\""
        ),
        "{err}"
    );

    c.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "bob-reads",
        "--role=pod-reader",
        "--user=bob",
    ]);
    assert_eq!(
        c.kubectl_ok(&["auth", "can-i", "list", "pods", "--as=bob"]),
        "yes\n"
    );
    c.kubectl_ok(&["get", "pods", "--as=bob"]);
    // A SubjectAccessReview names the binding that allows, as upstream's RBAC does.
    let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
        "spec":{"user":"bob","resourceAttributes":{"namespace":"default","verb":"list","resource":"pods"}}}"#;
    let out = c.kubectl_stdin(
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.allowed} {.status.reason}",
        ],
        sar,
    );
    assert_eq!(
        stdout(&out),
        "true RBAC: allowed by RoleBinding \"bob-reads/default\" of Role \"pod-reader\" to User \"bob\"",
        "{}",
        stderr(&out)
    );
    let empty =
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{}}"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], empty);
    let err = stderr(&out);
    assert!(
        err.contains("spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
        ),
        "{err}"
    );
    let out = c.kubectl(&["auth", "can-i", "delete", "pods", "--as=bob"]);
    assert_eq!(stdout(&out), "no\n");
    // Only in the namespace of the binding.
    let out = c.kubectl(&[
        "auth",
        "can-i",
        "list",
        "pods",
        "-n",
        "kube-system",
        "--as=bob",
    ]);
    assert_eq!(stdout(&out), "no\n");

    // Groups come from --as-group.
    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "node-reader",
        "--verb=list",
        "--resource=nodes",
    ]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "devs-read-nodes",
        "--clusterrole=node-reader",
        "--group=devs",
    ]);
    let out = c.kubectl(&[
        "auth",
        "can-i",
        "list",
        "nodes",
        "--as=carol",
        "--as-group=devs",
    ]);
    assert_eq!(stdout(&out), "yes\n", "{}", stderr(&out));
    let out = c.kubectl(&["auth", "can-i", "list", "nodes", "--as=carol"]);
    assert_eq!(stdout(&out), "no\n");

    // Everyone may ask who they are and what they may do (system:basic-user).
    let rules = c.kubectl_ok(&["auth", "can-i", "--list", "--as=bob"]);
    assert!(
        rules.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{rules}"
    );
    assert!(rules.contains("pods"), "{rules}");
}

#[test]
fn whoami_shows_who_a_request_runs_as() {
    let c = Cluster::start();
    let me = c.kubectl_ok(&["auth", "whoami"]);
    assert!(me.contains("Username    system:admin"), "{me}");
    assert!(
        me.contains("Groups      [system:masters system:authenticated]"),
        "{me}"
    );

    let bob = c.kubectl_ok(&[
        "auth",
        "whoami",
        "--as=bob",
        "--as-group=devs",
        "--as-group=ops",
    ]);
    assert!(bob.contains("Username    bob"), "{bob}");
    assert!(
        bob.contains("Groups      [devs ops system:authenticated]"),
        "{bob}"
    );

    let sa = c.kubectl_ok(&[
        "auth",
        "whoami",
        "--as=system:serviceaccount:default:builder",
        "-o",
        "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
    ]);
    assert_eq!(
        sa,
        "system:serviceaccount:default:builder [\"system:serviceaccounts\",\"system:serviceaccounts:default\",\"system:authenticated\"]"
    );

    let kc = impersonating_kubeconfig(
        &c,
        "    as: user1\n    as-uid: abc123\n    as-user-extra:\n      example.com/team: [\"blue\", \"green\"]\n      scopes: [\"a b\"]\n",
    );
    let out = c.kubectl_with(
        &kc,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}|{.status.userInfo.uid}|{.status.userInfo.groups}|{.status.userInfo.extra}",
        ],
    );
    assert_eq!(
        stdout(&out),
        "user1|abc123|[\"system:authenticated\"]|{\"example.com/team\":[\"blue\",\"green\"],\"scopes\":[\"a b\"]}",
        "{}",
        stderr(&out)
    );

    // Groups or a uid without a user are refused by kubectl itself; the server
    // refuses them too (upstream answers 500 "without impersonating a user").
    let err = c.kubectl_err(&["get", "pods", "--as-group=devs"]);
    assert!(err.contains("without impersonating a user"), "{err}");
}

#[test]
fn impersonating_needs_the_impersonate_verb() {
    let c = Cluster::start();
    let bob = c.kubeconfig_for("bob", &[]);
    let out = c.kubectl_with(&bob, &["auth", "whoami"]);
    assert!(
        stdout(&out).contains("Username    bob"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // (Commands that start with discovery print only "Forbidden: unknown", against
    // upstream as well: kubectl's discovery client does not read the Status.)
    let out = c.kubectl_with(&bob, &["create", "configmap", "x", "--as=alice"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{}",
        stderr(&out)
    );

    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "impersonate-alice",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=alice",
    ]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "bob-as-alice",
        "--clusterrole=impersonate-alice",
        "--user=bob",
    ]);
    let out = c.kubectl_with(&bob, &["auth", "whoami", "--as=alice"]);
    assert!(
        stdout(&out).contains("Username    alice"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = c.kubectl_with(&bob, &["create", "configmap", "x", "--as=carol"]);
    assert!(
        stderr(&out).contains("users \"carol\" is forbidden"),
        "{}",
        stderr(&out)
    );
    let out = c.kubectl_with(
        &bob,
        &[
            "create",
            "configmap",
            "x",
            "--as=alice",
            "--as-group=admins",
        ],
    );
    assert!(
        stderr(&out).contains(
            "groups \"admins\" is forbidden: User \"bob\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
        ),
        "{}",
        stderr(&out)
    );
    // Alice herself may do no more than her own bindings allow.
    let out = c.kubectl_with(&bob, &["auth", "can-i", "list", "pods", "--as=alice"]);
    assert_eq!(stdout(&out), "no\n", "{}", stderr(&out));
}

/// PUTs a CSR to `foo/approval`, which must be refused; returns kubectl's stderr.
fn replace_approval(c: &Cluster, body: &str) -> String {
    let out = c.kubectl_stdin(
        &[
            "replace",
            "--raw",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/foo/approval",
            "-f",
            "-",
        ],
        body,
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    stderr(&out)
}

#[test]
fn certificate_signing_requests_record_the_requester_and_their_approval() {
    let c = Cluster::start();
    // Whatever the body says about the requester is replaced by who sent it.
    let body = csr_fixture().replacen(
        "spec:\n",
        "spec:\n  username: mallory\n  groups: [system:masters]\n",
        1,
    );
    let kc = impersonating_kubeconfig(
        &c,
        "    as: user1\n    as-uid: abc123\n    as-groups: [\"g1\"]\n    as-user-extra:\n      example.com/team: [\"blue\"]\n",
    );
    c.kubectl_ok(&[
        "create",
        "clusterrole",
        "csr-creator",
        "--verb=create",
        "--resource=certificatesigningrequests",
    ]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "user1-csr",
        "--clusterrole=csr-creator",
        "--user=user1",
    ]);
    let mut cmd = c.kubectl_cmd();
    cmd.env("KUBECONFIG", &kc).args(["create", "-f", "-"]);
    let out = common::run_with_stdin(cmd, &body);
    assert!(
        stdout(&out).contains("certificatesigningrequest.certificates.k8s.io/foo created"),
        "{}",
        stderr(&out)
    );
    let spec = c.kubectl_ok(&[
        "get",
        "csr",
        "foo",
        "-o",
        "jsonpath={.spec.username}|{.spec.uid}|{.spec.groups}|{.spec.extra}",
    ]);
    assert_eq!(
        spec,
        "user1|abc123|[\"g1\",\"system:authenticated\"]|{\"example.com/team\":[\"blue\"]}"
    );
    let table = c.kubectl_ok(&["get", "csr"]);
    assert!(
        table.contains("kubernetes.io/kube-apiserver-client   user1"),
        "{table}"
    );
    assert!(table.contains("Pending"), "{table}");

    // The spec never changes once created.
    c.kubectl_ok(&[
        "patch",
        "csr",
        "foo",
        "--type=merge",
        "-p",
        r#"{"spec":{"signerName":"example.com/other"}}"#,
    ]);
    assert_eq!(
        c.kubectl_ok(&["get", "csr", "foo", "-o", "jsonpath={.spec.signerName}"]),
        "kubernetes.io/kube-apiserver-client"
    );

    assert!(
        c.kubectl_ok(&["certificate", "approve", "foo"])
            .contains("approved")
    );
    assert_eq!(
        c.kubectl_ok(&[
            "get",
            "csr",
            "foo",
            "-o",
            "jsonpath={.status.conditions[*].type}"
        ]),
        "Approved"
    );
    // Approved and Denied together are refused, and approval cannot be taken back.
    let both = r#"{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"foo"},
        "status":{"conditions":[{"type":"Approved","status":"True"},{"type":"Denied","status":"True"}]}}"#;
    let err = replace_approval(&c, both);
    assert!(
        err.contains("Approved and Denied conditions are mutually exclusive"),
        "{err}"
    );
    let none = r#"{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{"name":"foo"},"status":{}}"#;
    let err = replace_approval(&c, none);
    assert!(
        err.contains("updates may not remove a condition of type"),
        "{err}"
    );

    // A request that is not a PKCS#10 request is refused.
    let bad = csr_fixture()
        .replace("name: foo", "name: bad")
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("request:") {
                "  request: bm90IGEgY3NyCg==".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let out = c.kubectl_stdin(&["create", "-f", "-"], &bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "The CertificateSigningRequest \"bad\" is invalid: spec.request: Invalid value"
        ) && stderr(&out).contains("PEM block type must be CERTIFICATE REQUEST"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn authorization_mode_always_allow_and_bad_values() {
    let c = Cluster::start_with(&["--authorization-mode", "AlwaysAllow"]);
    let bob = c.kubeconfig_for("bob", &[]);
    let out = c.kubectl_with(&bob, &["create", "configmap", "bobs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&c.kubectl_with(&bob, &["auth", "can-i", "delete", "nodes"])),
        "yes\n"
    );

    let dir = c.data_dir().join("bad-mode");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rkube"))
        .args(["server", "--data-dir"])
        .arg(&dir)
        .args([
            "--https-port",
            &common::free_port().to_string(),
            "--bind-address",
            "127.0.0.1",
        ])
        .args(["--authorization-mode", "Node,RBAC"])
        .output()
        .expect("rkube server");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--authorization-mode: authorization-mode \"Node\" is not supported"),
        "{}",
        stderr(&out)
    );
}
