//! tracefs: where the tracepoints live. Mounts it when missing, and reads event formats so
//! field offsets come from the running kernel, not from this build.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs mount point, mounting it at /sys/kernel/tracing when no copy is mounted.
pub fn ensure_mounted() -> Result<PathBuf> {
    for dir in CANDIDATES {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    let target = CANDIDATES[0];
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(Error::new(
            ErrorKind::UnsupportedKernel,
            format!("tracefs is not mounted and mounting it at {target} failed ({err}): run `mount -t tracefs tracefs {target}` as root"),
        ));
    }
    Ok(PathBuf::from(target))
}

/// The `format` file of `category/name`, or None when the kernel has no such event.
pub fn event_format(tracefs: &Path, category: &str, name: &str) -> Option<String> {
    std::fs::read_to_string(tracefs.join("events").join(category).join(name).join("format")).ok()
}

/// Offset and size of `field` in an event format.
pub fn field(format: &str, field: &str) -> Option<(usize, usize)> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        let ident = decl.split_ascii_whitespace().last()?.split('[').next()?;
        if ident != field {
            return None;
        }
        let num = |key: &str| -> Option<usize> {
            line.split(';').find_map(|p| p.trim().strip_prefix(key)).and_then(|v| v.trim().parse().ok())
        };
        Some((num("offset:")?, num("size:")?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: cap_capable\nID: 2073\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:const struct cred * cred;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:int cap;\toffset:32;\tsize:4;\tsigned:1;\n\
\tfield:int ret;\toffset:36;\tsize:4;\tsigned:1;\n\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:0;\n";

    #[test]
    fn finds_fields() {
        assert_eq!(field(FORMAT, "cap"), Some((32, 4)));
        assert_eq!(field(FORMAT, "ret"), Some((36, 4)));
        assert_eq!(field(FORMAT, "cred"), Some((8, 8)));
        assert_eq!(field(FORMAT, "comm"), Some((40, 16)));
        assert_eq!(field(FORMAT, "opts"), None);
    }
}
