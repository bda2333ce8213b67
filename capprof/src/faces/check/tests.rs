//! The comparison, on profiles built from checks and manifests written to a scratch directory
//! (no kernel, no root).

use std::path::{Path, PathBuf};

use super::*;
use crate::attribution::Check;
use crate::profile::{WorkloadKind, WorkloadMeta};

fn profile_needing(name: &str, caps: &[Capability], setid: bool) -> Profile {
    let checks = caps
        .iter()
        .map(|c| Check { comm: "srv".into(), exe_gains_privilege: setid, ..Check::for_test(c.number(), "ns_capable", &["__x64_sys_x", "ns_capable"]) })
        .collect();
    let meta = WorkloadMeta { service: None, name: name.into(), kind: WorkloadKind::Command, command: vec![], cgroup: String::new(), exit_status: None, container: None, net_uses: vec![], portable: false };
    Profile::assemble(Default::default(), Default::default(), 0, vec![WorkloadProfile::build(meta, checks)])
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("capprof-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn outcome(p: &Profile, files: &[PathBuf]) -> Outcome {
    let grants: Vec<Grant> = files.iter().flat_map(|f| manifest::read(f).unwrap()).collect();
    compare(p, &grants, None).unwrap()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx
        securityContext:
          capabilities:
            drop: [NET_RAW]
      - name: sidecar
        image: envoy
";

#[test]
fn over_granted_with_lines_and_unmatched_containers() {
    let d = scratch("over");
    let f = write(&d, "deploy.yaml", DEPLOYMENT);
    let o = outcome(&profile_needing("web", &[Capability::NET_BIND_SERVICE], false), &[f]);
    let rules: Vec<Rule> = o.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, [Rule::OverGranted, Rule::EscalationAllowed]);
    assert_eq!(o.findings[0].line, 12, "at `capabilities:`");
    assert_eq!(o.findings[0].capabilities.len(), 12, "13 of the default are left, one is used");
    assert!(o.findings[0].message.contains("MKNOD"), "{}", o.findings[0].message);
    assert_eq!(o.findings[1].line, 11, "at securityContext, where allowPrivilegeEscalation goes");
    assert_eq!(o.unmatched.len(), 1, "the sidecar is not in the profile");
    assert_eq!(o.exit_code(), OVER_GRANTED);
}

#[test]
fn under_granted_names_the_kernel_path() {
    let d = scratch("under");
    let f = write(&d, "compose.yaml", "services:\n  web:\n    image: nginx\n    cap_drop: [ALL]\n    security_opt: [no-new-privileges:true]\n");
    let o = outcome(&profile_needing("web", &[Capability::NET_BIND_SERVICE], false), &[f]);
    assert_eq!(o.findings.len(), 1);
    assert_eq!(o.findings[0].rule, Rule::UnderGranted);
    assert_eq!(o.findings[0].line, 4);
    assert!(o.findings[0].message.contains("ns_capable") && o.findings[0].message.contains("by srv"), "{}", o.findings[0].message);
    assert_eq!(o.exit_code(), UNDER_GRANTED);
}

#[test]
fn agreement_is_exit_zero_and_privileged_is_not() {
    let d = scratch("agree");
    let ok = write(&d, "ok.yaml", "services:\n  web:\n    cap_drop: [ALL]\n    cap_add: [CAP_NET_BIND_SERVICE]\n    security_opt: [no-new-privileges:true]\n");
    let p = profile_needing("web", &[Capability::NET_BIND_SERVICE], false);
    let o = outcome(&p, &[ok]);
    assert!(o.findings.is_empty(), "{:?}", o.findings);
    assert_eq!(o.exit_code(), 0);
    let root = write(&d, "root.yaml", "services:\n  web:\n    privileged: true\n");
    let o = outcome(&p, &[root]);
    assert_eq!(o.findings.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::Privileged]);
    let all = write(&d, "all.yaml", "services:\n  web:\n    cap_add: [ALL]\n    security_opt: [no-new-privileges]\n");
    let o = outcome(&p, &[all]);
    assert_eq!(o.findings[0].rule, Rule::OverGranted);
    assert!(o.findings[0].message.contains("drop ALL and add back"), "{}", o.findings[0].message);
}

#[test]
fn no_new_privileges_breaks_set_id_programs() {
    let d = scratch("nnp");
    let f = write(&d, "run.sh", "docker run --cap-drop=ALL --cap-add=SETUID --security-opt no-new-privileges --name web img\n");
    let o = outcome(&profile_needing("web", &[Capability::SETUID], true), &[f]);
    assert_eq!(o.findings.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::NoNewPrivilegesBreaks]);
    assert_eq!(o.exit_code(), UNDER_GRANTED);
}

#[test]
fn capprofs_own_systemd_dropin_agrees() {
    let d = scratch("dropin");
    let p = profile_needing("web.service", &[Capability::NET_BIND_SERVICE, Capability::SETUID], false);
    let text = crate::format::render(&p, crate::format::Format::Systemd).unwrap();
    let f = write(&d, "web.service.d/capprof.conf", &text);
    let o = outcome(&p, &[f]);
    assert!(o.findings.is_empty(), "{:?}\n{text}", o.findings);
}

#[test]
fn names_that_match_nothing_and_files_that_are_no_manifest() {
    let d = scratch("none");
    let f = write(&d, "deploy.yaml", DEPLOYMENT);
    let grants = manifest::read(&f).unwrap();
    let err = compare(&profile_needing("db", &[], false), &grants, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Usage);
    assert!(err.to_string().contains("web, sidecar"), "{err}");
    let o = compare(&profile_needing("db", &[], false), &grants, Some("sidecar")).unwrap();
    assert_eq!((o.findings[0].container.as_str(), o.unmatched.len()), ("sidecar", 1));
    let junk = write(&d, "notes.yaml", "title: my notes\nitems: [a, b]\n");
    assert_eq!(manifest::read(&junk).unwrap_err().kind(), ErrorKind::MalformedInput);
    let bad = write(&d, "bad.yaml", "services:\n  web:\n    cap_add: [NET_BIND]\n");
    let err = manifest::read(&bad).unwrap_err();
    assert!(err.to_string().contains("bad.yaml:3"), "{err}");
}

#[test]
fn sarif_points_at_file_and_line() {
    let d = scratch("sarif");
    let f = write(&d, "deploy.yaml", DEPLOYMENT);
    let o = outcome(&profile_needing("web", &[Capability::NET_BIND_SERVICE], false), &[f]);
    let v: serde_json::Value = serde_json::from_str(&report::sarif(&o).unwrap()).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let r = &v["runs"][0]["results"][0];
    assert_eq!(r["ruleId"], "capprof/over-granted");
    assert_eq!(r["level"], "warning");
    assert_eq!(r["locations"][0]["physicalLocation"]["region"]["startLine"], 12);
    assert!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap().ends_with("deploy.yaml"));
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"], r["ruleId"]);
}
