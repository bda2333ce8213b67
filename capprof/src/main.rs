//! capprof's entry point: everything lives in the library; this maps errors to exit codes.

fn main() {
    let code = match capprof::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("capprof: error: {err:#}");
            capprof::error::kind_of(&err).exit_code()
        }
    };
    std::process::exit(code);
}
