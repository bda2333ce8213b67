//! `capprof record --unit NAME.service`: record a systemd service from its start. The unit is
//! restarted under the kernel programs (started, if it was not running, and stopped again at
//! the end) and recorded until `--check` passes, `--duration` ends, it stops, or Ctrl-C; the
//! profile carries the unit's user and capability settings for `--format systemd`.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::profile::Profile;
use crate::session::service::{self, ServiceTrial};
use crate::session::subject::Subject;
use crate::session::trial::{profile_of, Probe};
use crate::session::{RecordOptions, Tracer};

/// Records the unit; the status is 0 when it started (and its check passed), else 1. With
/// `prove`, conditional capabilities are settled by restarts without each.
pub fn record_unit(name: &str, duration: Option<Duration>, probe: Option<&Probe>, prove: bool, options: &RecordOptions) -> Result<(Profile, i32)> {
    if prove && probe.is_none() {
        return Err(Error::new(ErrorKind::Usage, "record --unit --prove needs --check: how else would capprof tell that the service works?"));
    }
    let subject = Subject::new(&[], Some(name), false)?;
    let unit = subject.unit().ok_or_else(|| Error::new(ErrorKind::Internal, "a unit subject without its unit"))?;
    let mut tracer = Tracer::open(&options.kernel)?;
    let verb = if unit.unit.active { "restarting" } else { "starting" };
    let until = match (probe, duration) {
        (Some(p), _) => format!("until `{}` passes", p.check),
        (None, Some(d)) => format!("for {:.1} s", d.as_secs_f64()),
        (None, None) => "until it stops (Ctrl-C to end)".into(),
    };
    eprintln!("capprof: {verb} {} and recording it {until}", unit.unit.info.unit);
    let trial = service::run(&mut tracer, unit, &ServiceTrial { restrict: None, probe: probe.cloned(), duration, judged: false })?;
    let mut profile = profile_of(&tracer, &[], &trial, options);
    if let Some(f) = &trial.failure {
        eprintln!("capprof: {}: {f}", unit.unit.info.unit);
    }
    if prove && trial.success {
        crate::faces::record::prove::settle(&mut tracer, &subject, probe, &mut profile)?;
    } else if prove {
        eprintln!("capprof: --prove: the recorded start did not succeed: nothing to compare restarts with, conditional capabilities stay in the set");
    }
    drop(tracer);
    // Put back as it was (stopped again if it was not running, restarted without a trial's
    // set if --prove restricted it).
    drop(subject);
    Ok((profile, i32::from(!trial.success)))
}
