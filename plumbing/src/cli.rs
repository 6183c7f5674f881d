//! Flags: parse them once at start-up; a configuration that cannot work is a one-line error on
//! stderr and exit code 64 (`EX_USAGE` of sysexits.h), before anything else happens.

use std::fmt::Display;
use std::process::ExitCode;

/// `EX_USAGE`: the command line or the environment is wrong.
pub const EXIT_CONFIG: u8 = 64;

/// Parses the process's flags (and their environment variables) into `C`.
///
/// `Err` holds the exit code to return at once: success after `--help` or `--version` (already
/// printed), [`EXIT_CONFIG`] after a bad flag (its error already printed as one line).
pub fn parse<C: clap::Parser>() -> Result<C, ExitCode> {
    C::try_parse().map_err(|e| {
        let (code, text) = classify(&e);
        if code == 0 {
            let _ = e.print();
        } else {
            eprintln!("{text}");
        }
        ExitCode::from(code)
    })
}

/// Prints a configuration error (a flag's value that parsed but cannot work, e.g. an unreadable
/// file) as one line and returns [`EXIT_CONFIG`].
pub fn config_error(error: impl Display) -> ExitCode {
    eprintln!("error: {}", one_line(&error.to_string()));
    ExitCode::from(EXIT_CONFIG)
}

/// The exit code and the one line to print for a clap error.
fn classify(e: &clap::Error) -> (u8, String) {
    if !e.use_stderr() {
        // --help and --version are not errors.
        return (0, String::new());
    }
    (EXIT_CONFIG, one_line(&e.to_string()))
}

/// The message on one line: clap follows its error with usage and a hint about `--help`, and
/// puts the list of missing flags on lines of their own.
fn one_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        "invalid configuration".to_owned()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "t", version)]
    struct Flags {
        /// A number.
        #[arg(long)]
        n: u8,
    }

    fn err(args: &[&str]) -> clap::Error {
        Flags::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap_err()
    }

    #[test]
    fn a_bad_flag_is_exit_64_with_one_line_naming_the_flag() {
        let (code, line) = classify(&err(&["--n", "300"]));
        assert_eq!(code, EXIT_CONFIG);
        assert!(line.contains("--n"), "{line}");
        assert!(!line.contains('\n'));
        let (code, line) = classify(&err(&[]));
        assert_eq!(code, EXIT_CONFIG);
        assert!(line.contains("--n"), "{line}");
    }

    #[test]
    fn help_and_version_are_not_errors() {
        assert_eq!(classify(&err(&["--help"])).0, 0);
        assert_eq!(classify(&err(&["--version"])).0, 0);
    }

    #[test]
    fn the_message_is_kept_on_one_line_without_the_usage() {
        assert_eq!(one_line("\nerror: x\n\nUsage: t"), "error: x");
        assert_eq!(
            one_line(
                "error: missing:\n  --n <N>\n\nUsage: t --n <N>\n\nFor more information, try '--help'.\n"
            ),
            "error: missing: --n <N>"
        );
        assert_eq!(one_line(""), "invalid configuration");
    }
}
