//! `capprof check` against real files: the profile of a real recording (the real kernel), the
//! compose, Kubernetes and systemd outputs capprof itself writes from it, and hand-written
//! manifests: `privileged: true`, `add: [ALL]`, `drop` without `ALL`, anchors and aliases,
//! multi-document Kubernetes YAML, a `docker run` line, and files that are no manifest.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use capprof_tests::*;

/// One recording of `scenario bind 80` (it needs NET_BIND_SERVICE and nothing else), shared.
fn profile() -> &'static Path {
    static PROFILE: OnceLock<PathBuf> = OnceLock::new();
    PROFILE.get_or_init(|| {
        require_root();
        let _port = port_80_lock();
        let r = record_scenario(&["bind", "80"]);
        assert_eq!(r.status, 0, "{}", r.stderr);
        assert_eq!(added(&r.profile["workloads"][0]), ["NET_BIND_SERVICE"], "{}", r.stderr);
        let path = scratch("check").join("bind80.json");
        std::fs::write(&path, serde_json::to_string(&r.profile).unwrap()).unwrap();
        path
    })
}

fn write(name: &str, text: &str) -> PathBuf {
    let dir = scratch("check").join(unique());
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `capprof check PROFILE FILES... ARGS`: exit code and stdout.
fn check(files: &[&Path], args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(capprof());
    cmd.arg("check").arg(profile()).args(files).args(args);
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What capprof renders from the profile in `format`.
fn rendered(format: &str, name: &str) -> PathBuf {
    let out = write(name, "");
    let o = capprof_cmd(&["merge", profile().to_str().unwrap(), "-f", format, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn capprofs_own_outputs_agree_with_their_profile() {
    for (format, name) in [("compose", "compose.yaml"), ("k8s", "security-context.yaml"), ("k8s-patch", "patch.yaml"), ("systemd", "capprof.conf")] {
        let file = rendered(format, name);
        let (code, out, err) = check(&[&file], &[]);
        assert_eq!(code, 0, "{format}: {out}{err}\n{}", std::fs::read_to_string(&file).unwrap());
        assert!(out.contains("agrees with the profile"), "{format}: {out}");
    }
}

#[test]
fn a_unit_file_and_capprofs_drop_in_fold_into_one_entry() {
    let dir = scratch("check").join(unique());
    std::fs::create_dir_all(dir.join("web.service.d")).unwrap();
    let unit = dir.join("web.service");
    std::fs::write(&unit, "[Unit]\nDescription=web\n[Service]\nExecStart=/srv/web\nCapabilityBoundingSet=CAP_SYS_ADMIN CAP_NET_BIND_SERVICE\n").unwrap();
    let dropin = dir.join("web.service.d/capprof.conf");
    std::fs::copy(rendered("systemd", "capprof.conf"), &dropin).unwrap();
    // Alone, the unit file over-grants; with the drop-in (given first, folded after) it agrees.
    let (code, out, _) = check(&[&unit], &["--container", "web.service"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("web.service:5: warning:") && out.contains("SYS_ADMIN"), "{out}");
    let (code, out, err) = check(&[&dropin, &unit], &["--container", "web.service"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn over_granted_manifests_exit_1_at_their_lines() {
    let privileged = write("compose.yaml", "services:\n  web:\n    image: nginx\n    privileged: true\n");
    let (code, out, _) = check(&[&privileged], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("compose.yaml:4: warning:") && out.contains("capprof/privileged"), "{out}");

    // Anchors, aliases and a merge key: the hardened defaults apply, `add: [ALL]` undoes them.
    let all = write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: init\n        securityContext: &hardened\n          allowPrivilegeEscalation: false\n          capabilities:\n            drop: [ALL]\n            add: [ALL]\n      containers:\n      - name: web\n        securityContext: *hardened\n",
    );
    let (code, out, _) = check(&[&all], &["--container", "web"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("drop ALL and add back"), "{out}");
    assert!(out.contains("init: not in the profile"), "{out}");

    // `drop` without ALL leaves the rest of Docker's default.
    let partial = write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: web\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities:\n        drop: [NET_RAW, MKNOD]\n        add: [NET_BIND_SERVICE]\n");
    let (code, out, _) = check(&[&partial], &["-f", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "over-granted");
    assert_eq!(f["line"], 9, "{f}");
    assert_eq!(f["capabilities"].as_array().unwrap().len(), 11, "14 - NET_RAW - MKNOD - the one used: {f}");
}

#[test]
fn under_granted_manifests_exit_2_with_the_kernel_path() {
    let run = write("run.sh", "#!/bin/sh\ndocker run --rm \\\n  --cap-drop=ALL --security-opt no-new-privileges \\\n  --name web nginx\n");
    let (code, out, _) = check(&[&run], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("run.sh:2: error:") && out.contains("NET_BIND_SERVICE") && out.contains("it will break"), "{out}");
    assert!(out.contains("bind"), "the kernel path: {out}");
    let unit = write("web.service", "[Unit]\nDescription=web\n[Service]\nExecStart=/srv/web\nCapabilityBoundingSet=CAP_CHOWN\nNoNewPrivileges=yes\n");
    let (code, out, _) = check(&[&unit], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("web.service:5: error:"), "{out}");
}

#[test]
fn sarif_for_code_scanning() {
    let pod = write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: web\n    image: nginx\n");
    let (code, out, _) = check(&[&pod], &["--format", "sarif"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("SARIF is JSON");
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["$schema"], "https://json.schemastore.org/sarif-2.1.0.json");
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"].as_str().unwrap().ends_with("pod.yaml"), "{r}");
        assert_eq!(loc["region"]["startLine"], 6, "the container's line: {r}");
        assert!(r["message"]["text"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

#[test]
fn files_that_are_no_manifest_are_clear_errors() {
    let notes = write("notes.yaml", "title: release notes\nitems: [a, b]\n");
    let (code, _, err) = check(&[&notes], &[]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("notes.yaml: not a manifest capprof reads"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let broken = write("broken.yaml", "services:\n  web: [\n");
    let (code, _, err) = check(&[&broken], &[]);
    assert_eq!(code, 65, "{err}");
    let unknown = write("compose.yaml", "services:\n  web:\n    cap_add: [NET_BIND]\n");
    let (code, _, err) = check(&[&unknown], &[]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("compose.yaml:3") && err.contains("NET_BIND"), "{err}");
    let (code, _, err) = check(&[Path::new("/nonexistent/x.yaml")], &[]);
    assert_eq!(code, 74, "{err}");
    let two = write("compose.yaml", "services:\n  a: {image: x}\n  b: {image: y}\n");
    let (code, _, err) = check(&[&two], &[]);
    assert_eq!(code, 64, "nothing matched by name: {err}");
    assert!(err.contains("nothing to compare"), "{err}");
    let (code, out, _) = check(&[&two], &["--container", "b"]);
    assert_eq!(code, 1, "b is the recorded workload now: {out}");
    assert!(out.contains("a: not in the profile"), "{out}");
}
