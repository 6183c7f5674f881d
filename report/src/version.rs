//! Kubernetes versions as the API server and the kubelet print them (`gitVersion`, e.g.
//! `v1.37.2-gke.1200`): one rule for every reader, so that the ingester's `master_minor`
//! column and the published statistics put a cluster in the same minor release.
//!
//! The rule, [`GitVersion::parse`]:
//!
//! ```text
//! git-version ::= ["v"] major "." minor ["." patch] [suffix]
//! suffix      ::= ("-" | "+") anything      (a vendor's build: -gke.1200, -eks-a737599, +k3s1)
//! major, minor ::= "0" | [1-9] [0-9]{0,2}   (a number without a leading zero, at most 3 digits)
//! patch       ::= "0" | [1-9] [0-9]{0,3}    (at most 4 digits)
//! ```
//!
//! Decisions, and why:
//! - **Any major is a version**: `v2.0.1` is minor `2.0`. Kubernetes has been 1.x since 2015,
//!   but a 2.0 is plausible, and the clusters running it should be counted as `2.0` on the day
//!   it ships rather than hidden in `other`. A number of minors between two majors means
//!   nothing, so readers compare minors only within one major ([`Minor::minors_after`]).
//! - **A leading zero is not a version** (`v01.2`): no Kubernetes build prints one (they are
//!   semantic versions), and reading it as `1.2` would be a guess. It also keeps every label
//!   the digits as they were written, which SQL engines extract without re-formatting.
//! - **Anything after the numbers must start a suffix**: `v1.37.2.1`, `v1.37.2foo` and `1.x`
//!   are not versions; `1.29` (no patch) and `v1.28+k3s1` (a suffix after the minor) are.
//! - The digit bounds keep a label short and bounded: nothing longer than `999.999.9999` is
//!   ever published as a version.

use std::fmt;

/// The numbers of a Kubernetes `gitVersion`; the suffix is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GitVersion {
    /// The major release, `1` in `v1.37.2`.
    pub major: u16,
    /// The minor release within the major, `37` in `v1.37.2`.
    pub minor: u16,
    /// The patch release, `2` in `v1.37.2`; `None` when the string stops at the minor.
    pub patch: Option<u16>,
}

/// A minor release, `1.37`: what the statistics count clusters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Minor {
    /// The major release.
    pub major: u16,
    /// The minor release within the major.
    pub minor: u16,
}

/// Most digits of the major and the minor number.
pub const MAX_MINOR_DIGITS: usize = 3;
/// Most digits of the patch number.
pub const MAX_PATCH_DIGITS: usize = 4;

impl GitVersion {
    /// Parses a `gitVersion` by the rule in the [module documentation](self); `None` when the
    /// string does not follow it.
    pub fn parse(git_version: &str) -> Option<Self> {
        let s = git_version.strip_prefix('v').unwrap_or(git_version);
        let (major, s) = number(s, MAX_MINOR_DIGITS)?;
        let s = s.strip_prefix('.')?;
        let (minor, s) = number(s, MAX_MINOR_DIGITS)?;
        let (patch, s) = match s.strip_prefix('.') {
            Some(rest) => {
                let (patch, rest) = number(rest, MAX_PATCH_DIGITS)?;
                (Some(patch), rest)
            }
            None => (None, s),
        };
        (s.is_empty() || s.starts_with(['-', '+'])).then_some(GitVersion {
            major,
            minor,
            patch,
        })
    }

    /// The minor release.
    pub fn minor(&self) -> Minor {
        Minor {
            major: self.major,
            minor: self.minor,
        }
    }
}

/// `1.37.2`, or `1.37` without a patch number: the digits as the rule read them.
impl fmt::Display for GitVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.minor().fmt(f)?;
        match self.patch {
            Some(patch) => write!(f, ".{patch}"),
            None => Ok(()),
        }
    }
}

impl Minor {
    /// How many minor releases `self` is after `base` (negative when before); `None` across
    /// two majors, where a number of minors means nothing.
    pub fn minors_after(&self, base: Minor) -> Option<i32> {
        (self.major == base.major).then(|| i32::from(self.minor) - i32::from(base.minor))
    }
}

/// `1.37`.
impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The minor release of a `gitVersion` ([`GitVersion::parse`]), e.g. `1.37` for
/// `v1.37.2-gke.1200`.
pub fn minor(git_version: &str) -> Option<Minor> {
    GitVersion::parse(git_version).map(|v| v.minor())
}

/// A number of 1 to `max_digits` ASCII digits without a leading zero at the start of `s`, and
/// the rest of `s`.
fn number(s: &str, max_digits: usize) -> Option<(u16, &str)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = s.split_at(len);
    if digits.is_empty()
        || digits.len() > max_digits
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    // At most 4 ASCII digits: always a u16.
    digits.parse().ok().map(|n| (n, rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn label(s: &str) -> Option<String> {
        minor(s).map(|m| m.to_string())
    }

    #[test]
    fn the_minor_comes_from_the_numbers_whatever_the_vendor_suffix() {
        for (input, want) in [
            ("v1.37.2", "1.37"),
            ("v1.37.2-gke.1", "1.37"),
            ("v1.30.5-gke.1014001", "1.30"),
            ("v1.30.4-eks-a737599", "1.30"),
            ("v1.31.1+k3s1", "1.31"),
            ("v1.28+k3s1", "1.28"),
            ("v1.27.6+b49f9d1", "1.27"),
            ("1.29", "1.29"),
            ("v1.0.0", "1.0"),
            ("v0.21.4", "0.21"),
            ("v1.999.9999", "1.999"),
        ] {
            assert_eq!(label(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn a_future_major_is_counted_as_itself() {
        assert_eq!(label("v2.0.1").as_deref(), Some("2.0"));
        assert_eq!(
            GitVersion::parse("v2.0.1"),
            Some(GitVersion {
                major: 2,
                minor: 0,
                patch: Some(1)
            })
        );
    }

    #[test]
    fn strings_that_do_not_follow_the_rule_have_no_minor() {
        for input in [
            "",
            "v",
            "v1",
            "v1.",
            "1.x",
            "vx.y.z",
            "garbage",
            "v01.2",
            "v1.02.3",
            "v1.2.03",
            "V1.2.3",
            "vv1.2.3",
            " v1.2.3",
            "v1.37.2.1",
            "v1.37.2foo",
            "v1.37foo",
            "v1.37.",
            "v1.37.-gke",
            "v1000.0.0",
            "v1.1000.0",
            "v1.2.10000",
            "v-1.2.3",
            "v1.2.3\u{0661}",
            "v\u{0661}.2.3",
        ] {
            assert_eq!(GitVersion::parse(input), None, "{input:?}");
        }
    }

    #[test]
    fn a_version_prints_back_as_the_digits_it_was_read_from() {
        assert_eq!(
            GitVersion::parse("v1.37.2-gke.1").unwrap().to_string(),
            "1.37.2"
        );
        assert_eq!(GitVersion::parse("1.29+k3s1").unwrap().to_string(), "1.29");
        assert_eq!(GitVersion::parse("v0.0.0").unwrap().to_string(), "0.0.0");
    }

    #[test]
    fn skew_is_counted_in_minors_within_one_major_only() {
        let m = |s: &str| minor(s).unwrap();
        assert_eq!(m("v1.35.0").minors_after(m("v1.37.2")), Some(-2));
        assert_eq!(m("v1.37.0").minors_after(m("v1.37.2")), Some(0));
        assert_eq!(m("v2.0.0").minors_after(m("v1.37.2")), None);
    }
}
