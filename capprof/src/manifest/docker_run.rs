//! `docker run` (podman, nerdctl) command lines in a file: a script, a Makefile recipe, a
//! README snippet saved alone. Each run command is a grant: `--cap-add`, `--cap-drop`,
//! `--privileged`, `--security-opt no-new-privileges`; matched by `--name`, else by image.

use std::path::Path;

use super::compose::is_no_new_privileges;
use super::{container_set, Grant, ManifestKind};
use crate::attribution::run_command::{locate_run, run_image, VALUE_OPTIONS};
use crate::capability::CapSet;
use crate::error::Result;

/// The run commands of `text`, one grant each; None when it has none.
pub fn grants(file: &Path, text: &str) -> Result<Option<Vec<Grant>>> {
    let mut out = Vec::new();
    for (line, command) in logical_lines(text) {
        let Some(words) = shlex::split(&command) else { continue };
        // Commands chained on one line: each is looked at alone.
        for argv in words.split(|w| matches!(w.as_str(), "&&" | "||" | ";" | "|")) {
            if let Some(grant) = run_grant(file, line, argv)? {
                out.push(grant);
            }
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Lines with `\` continuations joined, comments and blank lines left out, each with the line
/// it starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_end();
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        if acc.is_empty() && (trimmed.trim_start().starts_with('#') || trimmed.trim().is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                acc.push_str(head);
                acc.push(' ');
                current = Some((start, acc));
            }
            None => {
                acc.push_str(trimmed);
                out.push((start, acc));
            }
        }
    }
    out.extend(current);
    out
}

fn run_grant(file: &Path, line: usize, argv: &[String]) -> Result<Option<Grant>> {
    let Some((run, _)) = locate_run(argv) else { return Ok(None) };
    let (mut add, mut drop, mut privileged, mut nnp, mut name) = (Vec::new(), Vec::new(), false, false, None);
    let mut i = run + 1;
    while i < argv.len() {
        let a = &argv[i];
        if !a.starts_with('-') || a == "--" {
            break;
        }
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) => (o, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let takes_value = matches!(opt, "--cap-add" | "--cap-drop") || VALUE_OPTIONS.contains(&opt);
        let value = inline.clone().or_else(|| takes_value.then(|| argv.get(i + 1).cloned()).flatten());
        match (opt, value) {
            ("--cap-add", Some(v)) => add.extend(v.split(',').map(|c| (c.to_string(), line))),
            ("--cap-drop", Some(v)) => drop.extend(v.split(',').map(|c| (c.to_string(), line))),
            ("--privileged", _) => privileged = inline.as_deref().is_none_or(|v| v == "true"),
            ("--security-opt", Some(v)) if is_no_new_privileges(&v) => nnp = true,
            ("--name", Some(v)) => name = Some(v),
            _ => {}
        }
        i += if takes_value && inline.is_none() { 2 } else { 1 };
    }
    let image = run_image(argv).unwrap_or_default();
    let granted = if privileged { CapSet::full() } else { container_set(&add, &drop, file)? };
    Ok(Some(Grant {
        file: file.to_path_buf(),
        kind: ManifestKind::DockerRun,
        owner: format!("{} run", argv.first().map(|e| e.rsplit('/').next().unwrap_or(e)).unwrap_or("docker")),
        container: name.unwrap_or(image),
        line,
        capabilities_line: line,
        granted,
        privileged,
        no_new_privileges: nnp,
        no_new_privileges_line: line,
        assumed: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    #[test]
    fn run_lines_in_a_script() {
        let text = "#!/bin/sh\n# start it\nset -e\ndocker run -d --name web \\\n  --cap-drop=ALL --cap-add NET_BIND_SERVICE \\\n  --security-opt no-new-privileges nginx:1 -g 'daemon off;'\ndocker pull x && podman run --privileged --rm img\n";
        let g = grants(Path::new("run.sh"), text).unwrap().unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].container.as_str(), g[0].line), ("web", 4));
        assert_eq!(g[0].granted, [Capability::NET_BIND_SERVICE].into_iter().collect());
        assert!(g[0].no_new_privileges);
        assert_eq!((g[1].container.as_str(), g[1].owner.as_str(), g[1].privileged), ("img", "podman run", true));
        assert!(grants(Path::new("x"), "make all\n").unwrap().is_none());
    }
}
