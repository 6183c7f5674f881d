//! Numbers as the pages write them: counts, shares, privacy parameters, SVG coordinates.

use maud::{Markup, html};

/// An SVG coordinate.
pub(super) fn f1(v: f64) -> String {
    // One decimal is finer than a pixel; trailing `.0` is dropped to keep the page small.
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// A privacy parameter or σ: three significant digits, without trailing zeros.
pub(super) fn sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A small number such as δ in scientific notation: `10⁻⁷`, `5.2 × 10⁻⁶`.
pub(super) fn sci(v: f64) -> Markup {
    if v <= 0.0 || !v.is_finite() {
        return html! { (v) };
    }
    let mut exponent = v.log10().floor() as i32;
    let mut mantissa = (v / 10f64.powi(exponent) * 10.0).round() / 10.0;
    if mantissa >= 10.0 {
        mantissa /= 10.0;
        exponent += 1;
    }
    let power = html! { "10" sup { (exponent.to_string().replace('-', "−")) } };
    html! {
        @if (mantissa - 1.0).abs() < 1e-9 { (power) } @else { (sig(mantissa)) " × " (power) }
    }
}

/// A share as a percentage with one decimal.
pub(super) fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A share on a chart's axis: a whole percentage where it is one.
pub(super) fn pct_tick(share: f64) -> String {
    let v = share * 100.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{}%", v.round())
    } else {
        format!("{v:.1}%")
    }
}

/// A share as the tables show it: one decimal of a percent, `—` when there is none.
pub(super) fn share_text(share: Option<f64>) -> String {
    share.map_or_else(|| "—".into(), pct)
}

/// A total, or `withheld`.
pub(super) fn total(v: Option<u64>) -> String {
    v.map_or_else(|| "withheld".into(), thousands)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// At most `max` characters, the last an ellipsis when cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn axis_ticks_are_whole_percentages_where_they_can_be() {
        assert_eq!(pct_tick(0.125), "12.5%");
        assert_eq!(pct_tick(0.5), "50%");
    }

    #[test]
    fn privacy_parameters_have_three_significant_digits_and_delta_a_power_of_ten() {
        assert_eq!(sig(0.049998), "0.05");
        assert_eq!(sig(1.884), "1.88");
        assert_eq!(sig(14.17), "14.2");
        assert_eq!(sig(0.000962), "0.000962");
        assert_eq!(sig(638.499), "638");
        assert_eq!(sig(0.0), "0");
        assert_eq!(sci(1e-7).into_string(), "10<sup>−7</sup>");
        assert_eq!(sci(6e-7).into_string(), "6 × 10<sup>−7</sup>");
        assert_eq!(sci(5.2e-6).into_string(), "5.2 × 10<sup>−6</sup>");
        assert_eq!(sci(9.99e-7).into_string(), "10<sup>−6</sup>");
    }
}
