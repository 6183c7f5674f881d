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

/// Parses a byte size: a whole number with an optional unit, `B`, `KB`/`MB`/`GB` (powers of
/// 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), e.g. `4MiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size such as 4194304 or 4MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" | "m" => 1_000_000,
        "gb" | "g" => 1_000_000_000,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        other => {
            return Err(format!(
                "unknown byte unit {other:?} (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{s:?} is too large"))
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

    #[test]
    fn byte_sizes_accept_decimal_and_binary_units() {
        assert_eq!(parse_bytes("123"), Ok(123));
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("16 MB"), Ok(16_000_000));
        assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
    }
}
