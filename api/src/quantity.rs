//! Resource quantities (`250m`, `0.5`, `128Mi`, `1G`, `1e3`) with the Kubernetes grammar
//! and rounding.
//!
//! A `Quantity` keeps the text the user wrote (so manifests round-trip) next to its value,
//! and is only constructed through `parse` or the canonical constructors, so every `Quantity`
//! is valid. In manifests it may be a string or a bare number (`cpu: 1`, `cpu: 0.5`).
//!
//! The value is held exactly in nano-units (10⁻⁹), Kubernetes' finest precision: a value with
//! more precision is rounded up, away from zero, to the next nano-unit, as Kubernetes does (if
//! you ask for some of a resource you get some). The magnitude may be at most `i128::MAX`
//! nano-units (about 1.7·10²⁹ units, some 10¹¹ Ei); anything larger is rejected rather than
//! capped.
//!
//! Equality, ordering and hashing are numeric, so `1Ki == 1024` and `0.5 == 500m`; `as_str`
//! and `Display` still give the text as written.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone)]
pub struct Quantity {
    raw: String,
    nanos: i128,
}

/// The text that is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quantity {0:?}: must be a number (like 1, 0.5, .5, 1., +1 or -1) with an optional suffix (n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent like e3 or E-3), no spaces, and no larger than about 1.7e29"
)]
pub struct QuantityError(pub String);

const NANOS_PER_MILLI: i128 = 1_000_000;
const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl Quantity {
    /// Parses and checks a quantity:
    /// `<sign>? <digits> | <digits>. | <digits>.<digits> | .<digits>` followed by a suffix:
    /// binary (`Ki` `Mi` `Gi` `Ti` `Pi` `Ei`), decimal (`n` `u` `m` none `k` `M` `G` `T`
    /// `P` `E`) or an exponent (`e` or `E` and a signed integer). No whitespace anywhere.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        match parse_nanos(s) {
            Some(nanos) => Ok(Quantity {
                raw: s.to_string(),
                nanos,
            }),
            None => Err(QuantityError(s.to_string())),
        }
    }

    /// `millis` thousandths in canonical text: `250m`, or a plain integer (`2`) when whole.
    /// Never a binary suffix: this is for CPU, where `1Ki` cores would only confuse.
    pub fn from_millis(millis: i64) -> Quantity {
        let raw = if millis % 1000 == 0 {
            (millis / 1000).to_string()
        } else {
            format!("{millis}m")
        };
        Quantity {
            raw,
            nanos: i128::from(millis) * NANOS_PER_MILLI,
        }
    }

    /// `value` units in canonical text: the largest binary suffix that divides it exactly
    /// (`128Mi`, `3Ki`), otherwise a plain integer (`1000`, `0`).
    pub fn from_value(value: i64) -> Quantity {
        const BINARY: [(&str, u32); 6] = [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ];
        let suffixed = (value != 0)
            .then(|| {
                BINARY
                    .iter()
                    .find(|(_, shift)| value % (1i64 << shift) == 0)
                    .map(|(suffix, shift)| format!("{}{suffix}", value >> shift))
            })
            .flatten();
        Quantity {
            raw: suffixed.unwrap_or_else(|| value.to_string()),
            nanos: i128::from(value) * NANOS_PER_UNIT,
        }
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The value in thousandths (CPU millicores), rounded up away from zero and saturated to
    /// the `i64` range, like Kubernetes' `MilliValue`: `0.1m` is 1, `1.5` is 1500.
    pub fn milli_value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS_PER_MILLI))
    }

    /// The value in units (bytes, counts), rounded up away from zero and saturated to the
    /// `i64` range, like Kubernetes' `Value`: `1.5` is 2, `100m` is 1, `1Ki` is 1024.
    pub fn value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS_PER_UNIT))
    }

    /// Whether the value is below zero (`-0` is not). Resource requests and limits reject
    /// these; the grammar itself allows a sign.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
}

/// Nano-units of a quantity, or `None` when the text is not one (or is too large).
fn parse_nanos(s: &str) -> Option<i128> {
    let bytes = s.as_bytes();
    let (negative, mut i) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits_from = |from: usize| {
        bytes[from..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |n| from + n)
    };
    let int_end = digits_from(i);
    let int_digits = &bytes[i..int_end];
    i = int_end;
    let mut frac_digits: &[u8] = &[];
    if bytes.get(i) == Some(&b'.') {
        let frac_end = digits_from(i + 1);
        frac_digits = &bytes[i + 1..frac_end];
        i = frac_end;
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let (exponent, binary_shift) = parse_suffix(&s[i..])?;

    // The significant digits as numbers, without leading zeros; trailing zeros move into the
    // exponent so long spellings of small values (`1.000…0`) do not overflow.
    let mut digits: Vec<u8> = int_digits
        .iter()
        .chain(frac_digits)
        .map(|b| b - b'0')
        .skip_while(|&d| d == 0)
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    let mut power = i128::from(exponent) - frac_digits.len() as i128 + 9;
    while digits.last() == Some(&0) {
        digits.pop();
        power += 1;
    }
    for _ in 0..binary_shift / 10 {
        multiply_digits(&mut digits, 1024);
    }

    // nanos = digits × 10^power, rounded up in magnitude.
    let magnitude = if power >= 0 {
        // i128::MAX has 39 digits; a non-zero value with more cannot fit.
        if power > 39 {
            return None;
        }
        let mut n = digits_to_i128(&digits)?;
        for _ in 0..power {
            n = n.checked_mul(10)?;
        }
        n
    } else {
        let dropped = usize::try_from(-power).unwrap_or(usize::MAX);
        if dropped >= digits.len() {
            // Smaller than one nano-unit but not zero: round up to one.
            1
        } else {
            let (kept, rest) = digits.split_at(digits.len() - dropped);
            let n = digits_to_i128(kept)?;
            if rest.iter().any(|&d| d != 0) {
                n.checked_add(1)?
            } else {
                n
            }
        }
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// (decimal exponent, binary shift) of a suffix.
fn parse_suffix(suffix: &str) -> Option<(i64, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))?;
            // `i64::from_str` takes exactly an optional sign and at least one digit.
            (exponent.parse::<i64>().ok()?, 0)
        }
    })
}

/// Multiplies a big-endian decimal digit string in place.
fn multiply_digits(digits: &mut Vec<u8>, factor: u32) {
    let mut carry = 0u32;
    for d in digits.iter_mut().rev() {
        let v = u32::from(*d) * factor + carry;
        *d = (v % 10) as u8;
        carry = v / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

fn digits_to_i128(digits: &[u8]) -> Option<i128> {
    digits
        .iter()
        .try_fold(0i128, |n, &d| n.checked_mul(10)?.checked_add(i128::from(d)))
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 { q } else { q + n.signum() }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

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

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl QuantityVisitor {
    fn parse<E: de::Error>(text: &str) -> Result<Quantity, E> {
        Quantity::parse(text).map_err(E::custom)
    }
}

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity: a number or a string such as \"250m\" or \"128Mi\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Self::parse(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Self::parse(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        // Rust prints finite floats in plain decimal (never with an exponent), which the
        // grammar reads exactly; NaN and infinities are not quantities.
        if !v.is_finite() {
            return Err(E::custom(QuantityError(v.to_string())));
        }
        Self::parse(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn grammar_accepts_and_scales() {
        // (text, nano-units)
        let cases: [(&str, i128); 48] = [
            ("0", 0),
            ("1", 1_000_000_000),
            ("+1", 1_000_000_000),
            ("-1", -1_000_000_000),
            ("-0", 0),
            ("007", 7_000_000_000),
            ("0.5", 500_000_000),
            (".5", 500_000_000),
            ("1.", 1_000_000_000),
            ("+.5", 500_000_000),
            ("-1.5", -1_500_000_000),
            ("1.50", 1_500_000_000),
            ("1n", 1),
            ("1u", 1_000),
            ("1m", 1_000_000),
            ("250m", 250_000_000),
            ("1k", 1_000_000_000_000),
            ("1M", 1_000_000_000_000_000),
            ("1G", 1_000_000_000_000_000_000),
            ("1T", 1_000_000_000_000_000_000_000),
            ("1P", 10i128.pow(24)),
            ("1E", 10i128.pow(27)),
            ("1Ki", 1024 * 1_000_000_000),
            ("1Mi", (1 << 20) * 1_000_000_000),
            ("128Mi", 128 * (1 << 20) * 1_000_000_000),
            ("1Gi", (1 << 30) * 1_000_000_000),
            ("1Ti", (1i128 << 40) * 1_000_000_000),
            ("1Pi", (1i128 << 50) * 1_000_000_000),
            ("1Ei", (1i128 << 60) * 1_000_000_000),
            ("0.5Ki", 512 * 1_000_000_000),
            ("1.5Gi", 3 * (1 << 29) * 1_000_000_000),
            (".5Mi", (1 << 19) * 1_000_000_000),
            ("1e3", 1_000 * 1_000_000_000),
            ("1E3", 1_000 * 1_000_000_000),
            ("1e+3", 1_000 * 1_000_000_000),
            ("1E-3", 1_000_000),
            ("1e0", 1_000_000_000),
            ("2.5e2", 250 * 1_000_000_000),
            ("-2e-9", -2),
            ("0e99", 0),
            ("1.m", 1_000_000),
            ("0.000000001", 1),
            (
                "1.000000000000000000000000000000000000000000000",
                1_000_000_000,
            ),
            (
                "12345678901234567890",
                12_345_678_901_234_567_890 * 1_000_000_000,
            ),
            ("1e29", 10i128.pow(38)),
            ("170141183460469231731687303715.884105727", i128::MAX),
            ("0.0Ki", 0),
            ("000.000", 0),
        ];
        for (text, nanos) in cases {
            let quantity = q(text);
            assert_eq!(quantity.nanos, nanos, "{text}");
            assert_eq!(quantity.as_str(), text);
            assert_eq!(quantity.to_string(), text);
        }
    }

    #[test]
    fn finer_than_nano_rounds_up_away_from_zero() {
        let cases: [(&str, i128); 8] = [
            ("0.1n", 1),
            ("1.1n", 2),
            ("-0.1n", -1),
            ("1e-30", 1),
            ("-1e-999999999", -1),
            ("0.0000000010000000001", 2),
            ("1.0000000001Ki", 1_024_000_000_103),
            ("0.00000000099999999999999999999999999999999999999999", 1),
        ];
        for (text, nanos) in cases {
            assert_eq!(q(text).nanos, nanos, "{text}");
        }
    }

    #[test]
    fn grammar_rejects() {
        let bad = [
            "",
            " ",
            "+",
            "-",
            ".",
            "+.",
            "-.e3",
            "1.2.3",
            "Mi",
            "mi",
            "1mi",
            "1MI",
            "1K",
            "1KI",
            "1ki",
            "1kb",
            "5 Mi",
            " 1",
            "1 ",
            "1e",
            "1E+",
            "1e-",
            "1e3.5",
            "1e1e1",
            "1Mi3",
            "--1",
            "+-1",
            "1,5",
            "0x10",
            "1_000",
            "∞",
            "1e99999999999999999999",
            "abc",
            "1.5.",
            "e3",
            "1m ",
            // Too large for i128 nano-units.
            "1e30",
            "2E29",
            "170141183460469231731687303715.884105728",
            "-170141183460469231731687303715.884105728",
            "200000000000Ei",
        ];
        for text in bad {
            let err = Quantity::parse(text).expect_err(text);
            assert_eq!(err, QuantityError(text.to_string()));
        }
        assert!(
            Quantity::parse("1mi")
                .unwrap_err()
                .to_string()
                .starts_with("invalid quantity \"1mi\": must be a number")
        );
    }

    #[test]
    fn milli_value_and_value_round_up() {
        // (text, milli_value, value)
        let cases = [
            ("0", 0, 0),
            ("0.1m", 1, 1),
            ("1m", 1, 1),
            ("100m", 100, 1),
            ("999m", 999, 1),
            ("1000m", 1000, 1),
            ("1001m", 1001, 2),
            ("250m", 250, 1),
            ("1.5", 1500, 2),
            ("2", 2000, 2),
            ("0.5", 500, 1),
            ("1n", 1, 1),
            ("1Ki", 1_024_000, 1024),
            ("1k", 1_000_000, 1000),
            ("1e3", 1_000_000, 1000),
            ("128Mi", 134_217_728_000, 134_217_728),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("1.5m", 2, 1),
            ("-1.5", -1500, -2),
            ("-0.1m", -1, -1),
            ("-100m", -100, -1),
            // Beyond i64: saturated.
            ("8Ei", i64::MAX, i64::MAX),
            ("-8Ei", i64::MIN, i64::MIN),
            ("9223372036854775807", i64::MAX, i64::MAX),
            (
                "9223372036854775.807",
                9_223_372_036_854_775_807,
                9_223_372_036_854_776,
            ),
            ("9223372036854775.8071", i64::MAX, 9_223_372_036_854_776),
            ("1e20", i64::MAX, i64::MAX),
        ];
        for (text, milli, value) in cases {
            let quantity = q(text);
            assert_eq!(quantity.milli_value(), milli, "milli_value of {text}");
            assert_eq!(quantity.value(), value, "value of {text}");
        }
    }

    #[test]
    fn canonical_constructors() {
        // (millis, text)
        let millis = [
            (0, "0"),
            (250, "250m"),
            (1000, "1"),
            (1500, "1500m"),
            (2000, "2"),
            (1_024_000, "1024"),
            (-500, "-500m"),
            (-3000, "-3"),
        ];
        for (m, text) in millis {
            let quantity = Quantity::from_millis(m);
            assert_eq!(quantity.as_str(), text);
            assert_eq!(quantity.milli_value(), m);
            assert_eq!(
                q(text).nanos,
                quantity.nanos,
                "{text} parses to the same value"
            );
        }
        // (value, text)
        let values = [
            (0, "0"),
            (1, "1"),
            (1000, "1000"),
            (1023, "1023"),
            (1024, "1Ki"),
            (3072, "3Ki"),
            (1536, "1536"),
            (128 << 20, "128Mi"),
            ((1 << 30) + (1 << 20), "1025Mi"),
            (1 << 30, "1Gi"),
            (1 << 40, "1Ti"),
            (1 << 50, "1Pi"),
            (1 << 60, "1Ei"),
            (-2048, "-2Ki"),
            (i64::MIN, "-8Ei"),
            (i64::MAX, "9223372036854775807"),
        ];
        for (v, text) in values {
            let quantity = Quantity::from_value(v);
            assert_eq!(quantity.as_str(), text);
            assert_eq!(quantity.value(), v);
            assert_eq!(
                q(text).nanos,
                quantity.nanos,
                "{text} parses to the same value"
            );
        }
    }

    #[test]
    fn sign_and_zero() {
        assert!(q("-1m").is_negative());
        assert!(q("-1e-20").is_negative());
        assert!(!q("-0").is_negative() && q("-0").is_zero());
        assert!(!q("0.0").is_negative() && q("0.0").is_zero());
        assert!(!q("1n").is_negative() && !q("1n").is_zero());
        assert!(!q("+5").is_negative());
    }

    #[test]
    fn equality_and_order_are_numeric() {
        let equal = [
            ("1Ki", "1024"),
            ("0.5", "500m"),
            ("1e3", "1k"),
            ("1", "1000m"),
            ("1.0", "+1"),
            ("0", "-0"),
            ("1G", "1000M"),
            ("0.1n", "1n"),
        ];
        for (a, b) in equal {
            assert_eq!(q(a), q(b), "{a} == {b}");
            assert_eq!(q(a).cmp(&q(b)), Ordering::Equal);
            assert_ne!(q(a).as_str(), q(b).as_str());
        }
        let ascending = [
            "-1Ki", "-1", "-1m", "0", "1n", "2n", "1m", "0.1", "999m", "1", "1001m", "1k", "1Ki",
            "1M", "1Mi", "1G", "1Gi",
        ];
        let mut shuffled: Vec<Quantity> = ascending.iter().rev().map(|s| q(s)).collect();
        shuffled.sort();
        let sorted: Vec<&str> = shuffled.iter().map(Quantity::as_str).collect();
        assert_eq!(sorted, ascending);
        assert!(q("100m") < q("0.2") && q("1Gi") > q("1G"));

        // Hash follows equality: a set keeps one of each value.
        let set: std::collections::HashSet<Quantity> = ["1Ki", "1024", "1k", "1e3", "1"]
            .iter()
            .map(|s| q(s))
            .collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn serde_string_and_number() {
        // (JSON, text kept)
        let json = [
            (r#""250m""#, "250m"),
            (r#""128Mi""#, "128Mi"),
            ("1", "1"),
            ("-3", "-3"),
            ("18446744073709551615", "18446744073709551615"),
            ("0.5", "0.5"),
            ("1.0", "1"),
            ("1e3", "1000"),
            ("1.5e-3", "0.0015"),
        ];
        for (input, text) in json {
            let quantity: Quantity =
                serde_json::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(quantity.as_str(), text, "{input}");
            assert_eq!(quantity, q(text));
        }
        let yaml = [
            ("250m", "250m"),
            ("'1Gi'", "1Gi"),
            ("2", "2"),
            ("0.25", "0.25"),
            // A YAML float: kept as Rust prints the number.
            ("1e3", "1000"),
        ];
        for (input, text) in yaml {
            let quantity: Quantity =
                serde_yaml_ng::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(quantity.as_str(), text, "{input}");
        }
        #[derive(Debug, serde::Deserialize)]
        struct Resources {
            cpu: Quantity,
            memory: Quantity,
        }
        let r: Resources = serde_yaml_ng::from_str("cpu: 0.5\nmemory: 64Mi\n").unwrap();
        assert_eq!((r.cpu.milli_value(), r.memory.value()), (500, 64 << 20));

        for bad in [r#""1mi""#, r#""""#, "true", "null", "[1]", r#"{"a":1}"#] {
            assert!(serde_json::from_str::<Quantity>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<Quantity>(r#""5 Mi""#).unwrap_err();
        assert!(
            err.to_string().contains("invalid quantity \"5 Mi\""),
            "{err}"
        );

        // Serialized as the text written.
        assert_eq!(serde_json::to_string(&q("0.5Gi")).unwrap(), r#""0.5Gi""#);
        assert_eq!(
            serde_json::to_string(&Quantity::from_value(1 << 20)).unwrap(),
            r#""1Mi""#
        );
    }
}
