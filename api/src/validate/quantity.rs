//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed exactly.
//!
//! A [`Quantity`] holds its value as an integer count of nano-units, the finest precision
//! kube-apiserver keeps (finer values round up, away from zero, as `resource.ParseQuantity`
//! does). Its [`Display`](std::fmt::Display) is the canonical form kube-apiserver serializes:
//! `1536Mi` for `1.5Gi`, `500m` for `0.5`, `1k` for `1000`.

use std::cmp::Ordering;
use std::fmt;

/// The error `resource.ParseQuantity` gives for malformed input; validation quotes it.
pub(crate) const FORMAT_MESSAGE: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Why a string is not a quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not have the shape of a quantity.
    #[error("{}", FORMAT_MESSAGE)]
    Format,
    /// The number is fine but the suffix is not one Kubernetes knows.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// The value is beyond what Strait represents (about 1.7e29).
    #[error("quantity is too large")]
    TooLarge,
}

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Powers of 1000: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSI,
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// Scientific notation: `1e3`, `5E-3`.
    DecimalExponent,
}

/// A parsed quantity. Equality and ordering compare values only, so `1Gi == 1073741824`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Quantity {
    /// A quantity of `nanos` nano-units in the given format.
    pub fn from_nanos(nanos: i128, format: QuantityFormat) -> Self {
        Self { nanos, format }
    }

    /// The value in nano-units (`1` is `1_000_000_000`).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in milli-units, rounded up (`100m` of CPU is `100`).
    pub fn milli_value(&self) -> i128 {
        div_away(self.nanos, 1_000_000)
    }

    /// The value as a float, for ratios and display where exactness does not matter.
    pub fn as_f64(&self) -> f64 {
        // Precision loss is acceptable: callers use this for ratios only.
        self.nanos as f64 / 1e9
    }

    /// The format the quantity prints in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Whether the value is negative.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// The sum, saturating at the representable range; the format is this one's.
    pub fn saturating_add(&self, other: &Self) -> Self {
        Self {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }

    /// The value rounded up (away from zero) to milli precision, as kube-apiserver does for
    /// every resource list it stores.
    pub fn round_up_to_milli(&self) -> Self {
        Self {
            nanos: div_away(self.nanos, 1_000_000).saturating_mul(1_000_000),
            format: self.format,
        }
    }
}

/// `n / d` rounded away from zero.
fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

/// Parses a quantity such as `250m`, `1.5Gi`, `1e3` or `+2`.
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    if let Some(&c) = bytes.first()
        && (c == b'+' || c == b'-')
    {
        negative = c == b'-';
        pos = 1;
    }
    // Digits with an optional decimal point; digits past what i128 holds only matter as
    // a non-zero remainder that rounds the value up.
    let mut mantissa: i128 = 0;
    let mut fraction_digits: i32 = 0;
    let mut digits = 0;
    let mut seen_point = false;
    let mut sticky = false;
    let mut int_overflow = false;
    while pos < bytes.len() {
        let c = bytes[pos];
        if c == b'.' {
            if seen_point {
                return Err(QuantityError::Format);
            }
            seen_point = true;
        } else if c.is_ascii_digit() {
            digits += 1;
            let d = i128::from(c - b'0');
            match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
                Some(m) if m < 10i128.pow(36) => {
                    mantissa = m;
                    if seen_point {
                        fraction_digits += 1;
                    }
                }
                _ if seen_point => sticky |= d != 0,
                _ => int_overflow = true,
            }
        } else {
            break;
        }
        pos += 1;
    }
    if digits == 0 {
        return Err(QuantityError::Format);
    }
    let suffix = &s[pos..];
    let (base2, base10, format) = parse_suffix(suffix)?;
    if int_overflow {
        return Err(QuantityError::TooLarge);
    }

    // value = mantissa * 2^base2 * 10^(base10 - fraction_digits); in nanos, add 9.
    let mut value = mantissa
        .checked_mul(1i128 << base2)
        .ok_or(QuantityError::TooLarge)?;
    let exp = base10
        .checked_sub(fraction_digits)
        .and_then(|e| e.checked_add(9))
        .ok_or(QuantityError::TooLarge)?;
    if exp >= 0 {
        let scale = u32::try_from(exp)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .ok_or(QuantityError::TooLarge)?;
        value = value.checked_mul(scale).ok_or(QuantityError::TooLarge)?;
        if sticky {
            value = value.saturating_add(1);
        }
    } else {
        let shift = exp.unsigned_abs();
        match 10i128.checked_pow(shift) {
            Some(div) => {
                let rem = value % div;
                value /= div;
                if rem != 0 || sticky {
                    value += 1;
                }
            }
            // Less than one nano-unit: rounds up to one unless it is zero.
            None => value = i128::from(value != 0 || sticky),
        }
    }
    if value >= 10i128.pow(38) {
        return Err(QuantityError::TooLarge);
    }
    // Values below one that were written in binary units print as decimal, as upstream does.
    let format = if format == QuantityFormat::BinarySI && value < NANOS_PER_UNIT {
        QuantityFormat::DecimalSI
    } else {
        format
    };
    Ok(Quantity {
        nanos: if negative { -value } else { value },
        format,
    })
}

/// The suffix as (power of two, power of ten, format).
fn parse_suffix(suffix: &str) -> Result<(u32, i32, QuantityFormat), QuantityError> {
    use QuantityFormat::{BinarySI, DecimalExponent, DecimalSI};
    let known = match suffix {
        "" => Some((0, 0, DecimalSI)),
        "n" => Some((0, -9, DecimalSI)),
        "u" => Some((0, -6, DecimalSI)),
        "m" => Some((0, -3, DecimalSI)),
        "k" => Some((0, 3, DecimalSI)),
        "M" => Some((0, 6, DecimalSI)),
        "G" => Some((0, 9, DecimalSI)),
        "T" => Some((0, 12, DecimalSI)),
        "P" => Some((0, 15, DecimalSI)),
        "E" => Some((0, 18, DecimalSI)),
        "Ki" => Some((10, 0, BinarySI)),
        "Mi" => Some((20, 0, BinarySI)),
        "Gi" => Some((30, 0, BinarySI)),
        "Ti" => Some((40, 0, BinarySI)),
        "Pi" => Some((50, 0, BinarySI)),
        "Ei" => Some((60, 0, BinarySI)),
        _ => None,
    };
    if let Some(k) = known {
        return Ok(k);
    }
    // The overall shape upstream accepts: suffix letters, then an optional signed number.
    let letters_end = suffix
        .find(|c: char| !"eEinumkKMGTP".contains(c))
        .unwrap_or(suffix.len());
    let rest = &suffix[letters_end..];
    let rest_digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if !rest_digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(QuantityError::Format);
    }
    let letters = &suffix[..letters_end];
    if (letters == "e" || letters == "E") && !rest_digits.is_empty() {
        let exp: i32 = rest.parse().map_err(|_| QuantityError::TooLarge)?;
        return Ok((0, exp, DecimalExponent));
    }
    Err(QuantityError::Suffix)
}

impl fmt::Display for Quantity {
    /// The canonical form: the largest unit that keeps the number whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == QuantityFormat::BinarySI
            && self.is_integer()
            && self.nanos.unsigned_abs() >= 1024 * NANOS_PER_UNIT.unsigned_abs()
        {
            let mut v = self.nanos / NANOS_PER_UNIT;
            let mut unit = 0;
            while unit < 6 && v % 1024 == 0 {
                v /= 1024;
                unit += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][unit];
            return write!(f, "{v}{suffix}");
        }
        // Powers of 1000 from nano up to exa; pick the largest that divides evenly.
        let mut exp3: i32 = -9;
        let mut mantissa = self.nanos;
        while exp3 < 18 && mantissa % 1000 == 0 {
            mantissa /= 1000;
            exp3 += 3;
        }
        if self.format == QuantityFormat::DecimalExponent {
            if exp3 == 0 {
                write!(f, "{mantissa}")
            } else {
                write!(f, "{mantissa}e{exp3}")
            }
        } else {
            let suffix = match exp3 {
                -9 => "n",
                -6 => "u",
                -3 => "m",
                0 => "",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                _ => "E",
            };
            write!(f, "{mantissa}{suffix}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse_quantity(s)
            .map(|q| q.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse_quantity("500m").map(|q| q.milli_value()), Ok(500));
        assert_eq!(parse_quantity("1").map(|q| q.nanos()), Ok(1_000_000_000));
        assert_eq!(
            parse_quantity("1Ki").map(|q| q.nanos()),
            Ok(1024 * 1_000_000_000)
        );
        assert_eq!(
            parse_quantity("1e3").map(|q| q.nanos()),
            Ok(1_000_000_000_000)
        );
        assert_eq!(parse_quantity(".5").map(|q| q.milli_value()), Ok(500));
        assert_eq!(parse_quantity("-1").map(|q| q.is_negative()), Ok(true));
        assert_eq!(parse_quantity("1.5Gi"), parse_quantity("1536Mi"));
        assert!(parse_quantity("1Gi").ok() > parse_quantity("1G").ok());
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["", "Gi", "1.2.3", "1 Gi", "abc", "1Q", "1e", "1.5x"] {
            assert!(parse_quantity(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(parse_quantity("1kk"), Err(QuantityError::Suffix));
        assert_eq!(parse_quantity("1Gx"), Err(QuantityError::Format));
        assert_eq!(parse_quantity("1e400"), Err(QuantityError::TooLarge));
    }

    #[test]
    fn prints_canonical_forms() {
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1025"), "1025");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("2000000"), "2M");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("1.5e3"), "1500");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("100.5Ki"), "102912");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("-1.5"), "-1500m");
        assert_eq!(canon("0.0001"), "100u");
        assert_eq!(canon("1e-12"), "1e-9");
        assert_eq!(canon("0.000000000001"), "1n");
    }

    #[test]
    fn rounds_to_milli() {
        let q = parse_quantity("0.1m").expect("quantity");
        assert_eq!(q.round_up_to_milli().to_string(), "1m");
        let q = parse_quantity("1.0001").expect("quantity");
        assert_eq!(q.round_up_to_milli().to_string(), "1001m");
    }
}
