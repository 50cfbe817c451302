//! Resource quantities (`500m`, `1.5Gi`, `2e3`): parsing into integers, as upstream's
//! `resource.Quantity` does for `MilliValue()` and `Value()` (both round up).

/// A quantity string that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}"
)]
pub struct QuantityError(pub String);

/// A parsed quantity, exactly: `mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    /// Up to 30 significant decimal digits, with the sign.
    mantissa: i128,
    /// The power of ten the mantissa is multiplied by (may be negative).
    exp10: i32,
    /// A binary multiplier (2^10 per step of Ki, Mi, ...).
    exp2: u32,
}

impl Quantity {
    /// Parses the canonical and non-canonical forms upstream accepts.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let err = || QuantityError(s.to_string());
        let s = s.trim();
        if s.is_empty() {
            return Err(err());
        }
        let (sign, rest) = match s.as_bytes()[0] {
            b'+' => (1, &s[1..]),
            b'-' => (-1, &s[1..]),
            _ => (1, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits = format!("{int_part}{frac_part}");
        // Keep at most 30 significant digits; more cannot change an i64 result.
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = 0;
        let mut dropped = 0i32;
        for (i, d) in digits.bytes().enumerate() {
            if i >= 30 {
                dropped += 1;
                continue;
            }
            mantissa = mantissa * 10 + i128::from(d - b'0');
        }
        let mut exp10 = dropped - frac_part.len() as i32;
        let mut exp2 = 0u32;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            e if e.starts_with(['e', 'E']) => {
                let n: i32 = e[1..].parse().map_err(|_| err())?;
                if !(-30..=30).contains(&n) {
                    return Err(err());
                }
                exp10 += n;
            }
            _ => return Err(err()),
        }
        Ok(Quantity {
            mantissa: sign * mantissa,
            exp10,
            exp2,
        })
    }

    /// The value scaled by 10^`scale`, rounded up (away from zero for negatives,
    /// as upstream), saturating at the i64 range.
    fn scaled(&self, scale: i32) -> i64 {
        let mut m = self.mantissa.checked_shl(self.exp2).unwrap_or(i128::MAX);
        if self.exp2 > 0 && m.unsigned_abs() >> self.exp2 != self.mantissa.unsigned_abs() {
            m = if self.mantissa < 0 {
                i128::MIN
            } else {
                i128::MAX
            };
        }
        let e = self.exp10 + scale;
        let v = if e >= 0 {
            let mut v = m;
            for _ in 0..e {
                v = v.saturating_mul(10);
            }
            v
        } else {
            let div = 10i128.checked_pow((-e) as u32);
            match div {
                Some(div) => {
                    let q = m / div;
                    if m % div != 0 { q + m.signum() } else { q }
                }
                None => m.signum(),
            }
        };
        v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The value in whole units (bytes, pods), rounded up.
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// The value in thousandths (millicores), rounded up.
    pub fn milli_value(&self) -> i64 {
        self.scaled(3)
    }
}

/// The quantity `s` in whole units (bytes, pods), rounded up.
pub fn value(s: &str) -> Result<i64, QuantityError> {
    Quantity::parse(s).map(|q| q.value())
}

/// The quantity `s` in thousandths (CPU: millicores), rounded up.
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    Quantity::parse(s).map(|q| q.milli_value())
}

/// Formats millicores the way upstream prints CPU quantities (`250m`, `2`).
pub fn format_milli(milli: i64) -> String {
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

/// Formats bytes with the largest binary suffix that divides them (`256Gi`, `1536Mi`).
pub fn format_bytes(bytes: i64) -> String {
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let unit = 1i64 << shift;
        if bytes != 0 && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn cpu_and_memory_forms() {
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q("2").milli_value(), 2000);
        assert_eq!(q("1.5").value(), 2, "value rounds up");
        assert_eq!(q("100n").milli_value(), 1, "milli rounds up");
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("256Gi").value(), 256 << 30);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("128M").value(), 128_000_000);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("110").value(), 110);
        assert_eq!(q("-1").value(), -1);
        assert_eq!(q("+5k").value(), 5000);
        assert_eq!(q("0").milli_value(), 0);
        assert_eq!(q("8Ei").value(), i64::MAX, "saturates");
    }

    #[test]
    fn bad_quantities() {
        for bad in ["", "abc", "1.2.3", "5Q", "1e", ".", "m"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_milli(250), "250m");
        assert_eq!(format_milli(32000), "32");
        assert_eq!(format_bytes(256 << 30), "256Gi");
        assert_eq!(format_bytes(1536 << 20), "1536Mi");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn cpu_and_memory_as_the_kubelet_reads_them() {
        assert_eq!(milli_value("500m").unwrap(), 500);
        assert_eq!(milli_value("1").unwrap(), 1000);
        assert_eq!(milli_value("0.25").unwrap(), 250);
        assert_eq!(milli_value("1.5").unwrap(), 1500);
        assert_eq!(milli_value("100u").unwrap(), 1); // rounds up
        assert_eq!(value("64Mi").unwrap(), 64 << 20);
        assert_eq!(value("1G").unwrap(), 1_000_000_000);
        assert_eq!(value("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(value("2e3").unwrap(), 2000);
        assert_eq!(value("128974848").unwrap(), 128_974_848);
        assert_eq!(value("129e6").unwrap(), 129_000_000);
        assert_eq!(value("123Mi").unwrap(), 123 << 20);
        assert_eq!(value("0.5").unwrap(), 1);
        assert_eq!(value("-1").unwrap(), -1);
        assert_eq!(value("500M").unwrap(), 500_000_000);
        assert_eq!(value("1500m").unwrap(), 2);
        assert!(value("1Qi").is_err());
        assert!(value("1Zi").is_err());
        assert!(value("").is_err());
        assert!(value("abc").is_err());
        assert_eq!(value("9Ei").unwrap(), i64::MAX);
    }
}
