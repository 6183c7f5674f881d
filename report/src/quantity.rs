//! Kubernetes resource quantities (`4`, `500m`, `15437428Ki`, `1e9`): the grammar a report's
//! capacity values must follow ([`is_quantity`](crate::is_quantity)), and their value as a
//! number for every reader that buckets them, so that what the gateway accepts and what the
//! statistics can read are one rule.
//!
//! The grammar of Kubernetes `resource.Quantity`:
//!
//! ```text
//! quantity ::= [sign] number [suffix]
//! number   ::= digits | digits "." [digits] | "." digits
//! suffix   ::= Ki | Mi | Gi | Ti | Pi | Ei            (binary SI)
//!            | n | u | m | k | M | G | T | P | E     (decimal SI)
//!            | ("e" | "E") [sign] digits             (decimal exponent)
//! ```
//!
//! `E` alone is exa (`7E`); followed by digits it is an exponent (`7E3`).

/// How a suffix scales the number before it: multiplied or divided by a power of 2 or 10,
/// each exactly representable, so the value is the number rounded once and scaled once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// Multiplied by the factor (`k`, `Ki`, … and no suffix).
    Times(f64),
    /// Divided by the factor (`n`, `u`, `m`): exact for whole numbers of milli-units, which a
    /// multiplication by 0.001 would not be.
    Over(f64),
}

impl Scale {
    /// `x` scaled.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Scale::Times(f) => x * f,
            Scale::Over(f) => x / f,
        }
    }
}

/// Every suffix and its scale; the empty suffix (a bare number, or one with an exponent) is 1.
pub const SUFFIXES: &[(&str, Scale)] = &[
    ("", Scale::Times(1.0)),
    ("n", Scale::Over(1e9)),
    ("u", Scale::Over(1e6)),
    ("m", Scale::Over(1e3)),
    ("k", Scale::Times(1e3)),
    ("M", Scale::Times(1e6)),
    ("G", Scale::Times(1e9)),
    ("T", Scale::Times(1e12)),
    ("P", Scale::Times(1e15)),
    ("E", Scale::Times(1e18)),
    ("Ki", Scale::Times(1024.0)),
    ("Mi", Scale::Times(1048576.0)),
    ("Gi", Scale::Times(1073741824.0)),
    ("Ti", Scale::Times(1099511627776.0)),
    ("Pi", Scale::Times(1125899906842624.0)),
    ("Ei", Scale::Times(1152921504606846976.0)),
];

/// A quantity, read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// The number before the suffix, exponent included (`1.5e10`), rounded once to an f64.
    pub number: f64,
    /// The suffix (empty for none or an exponent).
    pub suffix: &'static str,
    /// The suffix's scale.
    pub scale: Scale,
}

impl Quantity {
    /// Reads `s` by the grammar in the [module documentation](self); `None` when it does not
    /// follow it. No length limit here: the report's rule adds one.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
        let int = digits(&b[i..]);
        i += int;
        let mut frac = 0;
        if b.get(i) == Some(&b'.') {
            i += 1;
            frac = digits(&b[i..]);
            i += frac;
        }
        if int + frac == 0 {
            return None;
        }
        // `i` counts ASCII bytes, so it is a character boundary.
        let (number, rest) = s.split_at(i);
        let (number, suffix, scale) =
            if let Some((suffix, scale)) = SUFFIXES.iter().find(|(suffix, _)| *suffix == rest) {
                (number, *suffix, *scale)
            } else {
                let exponent = rest.strip_prefix(['e', 'E'])?;
                let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if exponent.is_empty() || digits(exponent.as_bytes()) != exponent.len() {
                    return None;
                }
                (s, "", Scale::Times(1.0))
            };
        Some(Quantity {
            // What the grammar accepts is Rust's float syntax too (tested); a string that
            // were not would not be a quantity.
            number: number.parse().ok()?,
            suffix,
            scale,
        })
    }

    /// The value in base units (cores, bytes): `3500m` is 3.5, `16Gi` 17179869184. Infinite
    /// when beyond an f64 (`1e999`).
    pub fn value(&self) -> f64 {
        self.scale.apply(self.number)
    }
}

/// The value of a quantity ([`Quantity::parse`], [`Quantity::value`]); `None` when `s` is not
/// one.
pub fn value(s: &str) -> Option<f64> {
    Quantity::parse(s).map(|q| q.value())
}

/// Number of leading ASCII digits.
fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_in_base_units() {
        for (q, want) in [
            ("0", 0.0),
            ("4", 4.0),
            ("3500m", 3.5),
            ("100n", 1e-7),
            ("3u", 3e-6),
            ("1k", 1000.0),
            ("15437428Ki", 15437428.0 * 1024.0),
            ("16Gi", 17179869184.0),
            ("7E", 7e18),
            ("7Ei", 7.0 * 1152921504606846976.0),
            ("1e9", 1e9),
            ("1E-3", 0.001),
            ("1.5e+10", 1.5e10),
            ("+1", 1.0),
            ("-1", -1.0),
            (".5", 0.5),
            ("5.", 5.0),
        ] {
            assert_eq!(value(q), Some(want), "{q}");
        }
        assert_eq!(value("1e999"), Some(f64::INFINITY));
    }

    #[test]
    fn an_e_alone_is_exa_and_followed_by_digits_an_exponent() {
        let exa = Quantity::parse("7E").map(|q| q.suffix);
        assert_eq!(exa, Some("E"));
        let exponent = Quantity::parse("7E3").map(|q| (q.suffix, q.number));
        assert_eq!(exponent, Some(("", 7000.0)));
        assert_eq!(Quantity::parse("7E3Ki"), None, "an exponent and a suffix");
    }

    #[test]
    fn strings_outside_the_grammar_have_no_value() {
        for q in [
            "", ".", "+", "-", "Ki", "1KI", "1K", "1 Ki", "1e", "1e+", "1.2.3", "1Mi ", " 1",
            "1..", "0x10", "1ki", "1mi", "1e1.5", "1Kii", "∞", "inf", "NaN", "1_000", "1e3e3",
            "--1",
        ] {
            assert_eq!(value(q), None, "{q:?}");
        }
    }
}
