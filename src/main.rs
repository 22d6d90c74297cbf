use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so a closed stdout would only show up as write errors; restore the
    // default so that `kpg tag ... | head -1` stops at once, as Unix tools do.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = kpg::cli::Cli::parse();
    match kpg::cli::run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            let mut line = format!("kpg: error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !line.contains(&cause) {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
                source = cause_of(source);
            }
            eprintln!("{line}");
            ExitCode::from(2)
        }
    }
}

fn cause_of<'a>(
    err: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    err.and_then(|e| e.source())
}
