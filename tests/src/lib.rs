//! Test harness for capprof's integration tests: find the binaries, run `capprof record` on
//! a scenario, read back the JSON profile. Tests trigger real capability checks on the real
//! kernel and expect exact sets, in the spirit of pulsar's `TestRunner::run(trigger).expect_event`.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// Fails (never skips) when not root: every test here needs the kernel programs.
pub fn require_root() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "capprof's integration tests load eBPF programs: run them as root (cargo xtask test)");
}

/// target/<profile>/ of the running test.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf()
}

/// The capprof binary built beside the tests (`cargo xtask test` builds it first).
pub fn capprof() -> PathBuf {
    let p = target_dir().join("capprof");
    assert!(p.exists(), "{} not found: build it first (cargo xtask test does)", p.display());
    p
}

/// The scenario helper (a binary of this crate, built with the tests).
pub fn scenario() -> PathBuf {
    let p = target_dir().join("scenario");
    assert!(p.exists(), "{} not found: build it first (cargo xtask test does)", p.display());
    p
}

/// A unique scratch directory under /tmp, removed by the caller when it matters.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capprof-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What one `capprof record` run gave.
pub struct Recording {
    pub status: i32,
    pub profile: Value,
    pub stderr: String,
}

impl Recording {
    /// The minimal set (`capabilities.add`) of the only workload.
    pub fn added(&self) -> Vec<String> {
        self.workload()["capabilities"]["add"]
            .as_array()
            .expect("capabilities.add")
            .iter()
            .map(|v| v.as_str().expect("name").to_string())
            .collect()
    }

    pub fn workload(&self) -> &Value {
        let w = self.profile["workloads"].as_array().expect("workloads");
        assert_eq!(w.len(), 1, "one workload expected: {}", self.profile);
        &w[0]
    }

    /// Checks of one capability, any class.
    pub fn checks_of(&self, cap: &str) -> Vec<&Value> {
        self.workload()["checks"].as_array().expect("checks").iter().filter(|c| c["capability"] == cap).collect()
    }
}

/// Runs `capprof record --format json -o FILE [extra] -- argv` and parses the profile.
pub fn record(extra: &[&str], argv: &[&str]) -> Recording {
    let out_dir = scratch("profile");
    let file = out_dir.join(format!("{}.json", unique()));
    let output = Command::new(capprof())
        .arg("record")
        .args(["--format", "json", "-o"])
        .arg(&file)
        .args(extra)
        .arg("--")
        .args(argv)
        .output()
        .expect("running capprof");
    recording(output, &file)
}

fn recording(output: Output, file: &std::path::Path) -> Recording {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("no profile at {} ({e}); stderr:\n{stderr}", file.display()));
    let profile: Value = serde_json::from_str(&text).expect("profile JSON");
    Recording { status: output.status.code().unwrap_or(-1), profile, stderr }
}

/// Records the scenario helper with `args`.
pub fn record_scenario(args: &[&str]) -> Recording {
    let s = scenario();
    let mut argv = vec![s.to_str().unwrap()];
    argv.extend_from_slice(args);
    record(&[], &argv)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Runs capprof with arbitrary arguments.
pub fn capprof_cmd(args: &[&str]) -> Output {
    Command::new(capprof()).args(args).output().expect("running capprof")
}
