//! Resource quantities (`500m`, `1.5Gi`, `2e3`) as the kubelet needs them: CPU in
//! millicores and everything else in whole units, rounded up as upstream's
//! `MilliValue()` and `Value()` do.

/// A string that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a resource quantity")]
pub struct QuantityError(pub String);

/// `value * 10^exp10 * 2^exp2`, exactly, from the textual form.
fn parse(s: &str) -> Result<(i128, i32, u32), QuantityError> {
    let err = || QuantityError(s.to_string());
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(err());
    }
    let mut mantissa: i128 = 0;
    for d in digits.bytes() {
        mantissa = mantissa * 10 + i128::from(d - b'0');
    }
    let mut exp10 = -(frac.len() as i32);
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
            exp10 += e[1..].parse::<i32>().map_err(|_| err())?;
        }
        _ => return Err(err()),
    }
    Ok((if neg { -mantissa } else { mantissa }, exp10, exp2))
}

/// `q * 10^scale`, rounded up (towards positive infinity), saturating at i64.
fn scaled(s: &str, scale: i32) -> Result<i64, QuantityError> {
    let (m, exp10, exp2) = parse(s)?;
    let mut num: i128 = m;
    let mut den: i128 = 1;
    let e = exp10 + scale;
    let big = |x: i128| x.unsigned_abs() > (i64::MAX as u128) << 8;
    if e >= 0 {
        for _ in 0..e {
            num = num.saturating_mul(10);
            if big(num) {
                break;
            }
        }
    } else {
        for _ in 0..(-e).min(38) {
            den *= 10;
        }
    }
    for _ in 0..exp2 {
        num = num.saturating_mul(2);
        if big(num) {
            break;
        }
    }
    let q = num.div_euclid(den) + i128::from(num.rem_euclid(den) != 0);
    Ok(q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The quantity in thousandths (CPU: millicores).
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 3)
}

/// The quantity in units (memory: bytes).
pub fn value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory() {
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
        assert!(value("1Qi").is_err());
        assert!(value("").is_err());
        assert!(value("abc").is_err());
        assert_eq!(value("9Ei").unwrap(), i64::MAX);
    }
}
