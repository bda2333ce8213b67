//! The Kubernetes manifests under deploy/ pass the Kubernetes schemas, and keep the
//! capabilities capprof computed for itself; `capprof merge` unions profiles.

use std::process::Command;

use capprof_tests::*;
use serde_json::Value;

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn deploy_manifests_are_valid_and_least_privilege() {
    for file in ["deploy/base/namespace.yaml", "deploy/base/daemonset.yaml"] {
        let out = Command::new("kubernetes-validate").args(["--strict", "--quiet"]).arg(repo().join(file)).output().expect("kubernetes-validate (pip)");
        assert!(out.status.success(), "{file}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    let ds = std::fs::read_to_string(repo().join("deploy/base/daemonset.yaml")).unwrap();
    assert!(ds.contains("drop: [ALL]") && ds.contains("add: [BPF, PERFMON, SYSLOG, DAC_READ_SEARCH]"), "{ds}");
    assert!(ds.contains("privileged: false") && ds.contains("prometheus.io/scrape: \"true\""));
}

#[test]
fn merge_takes_the_union_of_needs_and_keeps_evidence() {
    require_root();
    let dir = scratch("merge");
    let target = dir.join("target");
    std::fs::create_dir_all(&target).unwrap();
    // One command, two behaviours (chroot into, or chown, the same directory): one workload.
    let script = format!("{} $OP {}", scenario().display(), target.display());
    let mut files = Vec::new();
    for op in ["chroot", "chown"] {
        let file = dir.join(format!("{op}.json"));
        let out = Command::new(capprof())
            .args(["record", "-f", "json", "-o", file.to_str().unwrap(), "--", "sh", "-c", &script])
            .env("OP", op)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        files.push(file);
    }
    let merged = dir.join("merged.json");
    let out = Command::new(capprof()).arg("merge").args(&files).args(["-f", "json", "-o", merged.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    let w = p["workloads"].as_array().unwrap();
    assert_eq!(w.len(), 1, "same command, one workload: {p}");
    assert_eq!(added(&w[0]), ["CHOWN", "SYS_CHROOT"]);
    // A malformed input is a one-line error, exit 65.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let out = Command::new(capprof()).args(["merge", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a capprof JSON profile"));
}
