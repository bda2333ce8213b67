//! Proofs by re-run that cannot be fooled: servers that outlive their `docker run` client (a
//! PID 1 ignores SIGTERM), a check something else already answers, checks made while capprof
//! stops a workload. Real Docker engine, real images.

use std::process::Command;

use capprof_tests::*;

/// Containers of `image` still present (running or not).
fn containers_of(image: &str) -> Vec<String> {
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &format!("ancestor={image}")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn remove_all(image: &str) {
    for id in containers_of(image) {
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
}

/// busybox httpd as the container's PID 1 ignores SIGTERM: stopping the client leaves it
/// serving unless capprof stops the container itself.
#[test]
fn minimize_of_a_pid_1_server_on_the_host_network() {
    require_root();
    let _c = container_lock();
    let _p = port_80_lock();
    let img = busybox_image("docker");
    remove_all(&img);
    let check = "busybox wget -q -O /dev/null http://127.0.0.1:80/";
    let server = ["docker", "run", "--rm", "--network", "host", &img, "httpd", "-f", "-p", "80", "-h", "/www"];
    let (status, profile, stderr) = capprof_json(&["minimize", "--ready", check, "--check", check, "--timeout", "15"], &server);
    assert_eq!(status, 0, "{stderr}");
    let w = containers(&profile);
    assert_eq!(w.len(), 1, "{stderr}");
    assert_eq!(added(w[0]), ["NET_BIND_SERVICE"], "{stderr}");
    assert!(stderr.contains("ignored SIGTERM: killed after"), "the report says what had to be killed: {stderr}");
    assert!(containers_of(&img).is_empty(), "no container is left behind: {:?}", containers_of(&img));
    // verify too, both ways, and nothing is left running after either.
    let verify = |caps: &str| {
        let out = Command::new(capprof())
            .args(["verify", "--caps", caps, "--ready", check, "--check", check, "--timeout", "10", "-f", "json", "-o", "/dev/null", "--"])
            .args(server)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = verify("NET_BIND_SERVICE");
    assert_eq!(code, Some(0), "{err}");
    assert!(containers_of(&img).is_empty(), "verify leaves no container: {err}");
    let (code, err) = verify("none");
    assert_eq!(code, Some(1), "without NET_BIND_SERVICE the server cannot bind port 80: {err}");
    assert!(containers_of(&img).is_empty(), "{err}");
}

/// The issue's own case: Debian's python3 as PID 1 of a real Debian image, serving port 80
/// on the host network. Its SIGTERM is ignored; a leftover would answer every later check.
#[test]
fn minimize_of_python_http_server_in_a_debian_image() {
    require_root();
    let img = debian_python_image();
    let _c = container_lock();
    let _p = port_80_lock();
    remove_all(&img);
    let check = "curl -fsS -m 5 -o /dev/null http://127.0.0.1:80/";
    let server = ["docker", "run", "--rm", "--network", "host", &img, "python3", "-m", "http.server", "80"];
    let (status, profile, stderr) = capprof_json(&["minimize", "--ready", check, "--check", check, "--timeout", "20"], &server);
    assert_eq!(status, 0, "{stderr}");
    let w = containers(&profile);
    assert_eq!(w.len(), 1, "{stderr}");
    assert_eq!(added(w[0]), ["NET_BIND_SERVICE"], "without NET_BIND_SERVICE python3 cannot bind port 80: {stderr}");
    assert!(containers_of(&img).is_empty(), "no container left running: {stderr}");
    // record of the same server, until a real request passes, agrees.
    let (status, recorded, stderr) = capprof_json(&["record", "--check", check, "--timeout", "20"], &server);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(containers(&recorded)[0]), ["NET_BIND_SERVICE"], "{stderr}");
    assert!(containers_of(&img).is_empty(), "record stops it too: {stderr}");
}

/// On Docker's own network namespace port 80 needs nothing; the check runs inside the
/// container. A named container left over would make the next trial fail ("name in use").
#[test]
fn minimize_of_a_named_pid_1_server_on_its_own_network() {
    require_root();
    let _c = container_lock();
    let img = busybox_image("docker");
    remove_all(&img);
    let name = format!("capprof-pid1-{}", unique());
    let check = format!("docker exec {name} wget -q -O /dev/null http://127.0.0.1:80/");
    let server = ["docker", "run", "--name", &name, "--network", "none", &img, "httpd", "-f", "-p", "80", "-h", "/www"];
    let (status, profile, stderr) = capprof_json(&["minimize", "--ready", &check, "--check", &check, "--timeout", "15"], &server);
    assert_eq!(status, 0, "{stderr}");
    let w = containers(&profile);
    assert!(!w.is_empty(), "{stderr}");
    assert!(w.iter().all(|w| added(w).is_empty()), "no capability on its own network namespace: {stderr}");
    assert!(containers_of(&img).is_empty(), "the named container was stopped and removed after every trial: {stderr}");
}

#[test]
fn a_check_answered_by_something_else_proves_nothing() {
    require_root();
    let _p = port_80_lock();
    let dir = scratch("neighbour");
    std::fs::write(dir.join("index.html"), "hi\n").unwrap();
    let mut neighbour = Command::new("busybox").args(["httpd", "-f", "-p", "80", "-h", dir.to_str().unwrap()]).spawn().unwrap();
    let check = "busybox wget -q -O /dev/null http://127.0.0.1:80/";
    for _ in 0..50 {
        if Command::new("sh").args(["-c", check]).status().unwrap().success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, _, stderr) = capprof_json(&["minimize", "--check", check, "--timeout", "5"], &["sleep", "30"]);
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    assert_eq!(status, 75, "{stderr}");
    assert!(stderr.contains("something else answers the check"), "{stderr}");
}

/// A shell that runs its child as another user and kills it when capprof stops it checks
/// KILL while capprof stops it: shown "at stop", not in the set. The child ignores SIGTERM
/// (capprof signals the whole cgroup): else it may be gone before the shell's trap runs, and
/// the shell's kill finds no process to check against.
#[test]
fn checks_made_while_stopping_are_shown_apart() {
    require_root();
    let s = scenario();
    let ready = scratch("at-stop").join("ready");
    let script = format!(
        "(trap '' TERM; exec {} sleep-as 65534 60) & child=$!; trap 'kill -TERM $child; kill -KILL $child; wait $child; exit 0' TERM; sleep 0.3; touch {}; wait $child",
        s.display(),
        ready.display()
    );
    let check = format!("test -e {}", ready.display());
    let (status, profile, stderr) = capprof_json(&["verify", "--caps", "ALL", "--check", &check, "--timeout", "10"], &["sh", "-c", &script]);
    assert_eq!(status, 0, "{stderr}");
    let w = &profile["workloads"][0];
    let kill: Vec<_> = w["checks"].as_array().unwrap().iter().filter(|c| c["capability"] == "KILL").collect();
    assert!(!kill.is_empty(), "the shell's kill of its child (another uid) checks KILL: {}", profile);
    assert!(kill.iter().all(|c| c["classification"] == "at_stop"), "{kill:?}");
    assert!(kill[0]["reason"].as_str().unwrap().contains("stopped the workload"), "{kill:?}");
    assert!(!added(w).contains(&"KILL".to_string()), "{}", profile);
}
