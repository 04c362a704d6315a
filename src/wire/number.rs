//! Numbers as Python writes them, into a small buffer on the stack.

use std::fmt::{self, Write};

/// A float as Python's `repr` writes it: shortest round-trip digits, always with a `.` or an
/// exponent, an exponent when it is below -4 or at least 16 (`1e-05`, `1e+16`).
pub(crate) fn write_py_float(out: &mut impl Write, x: f64) -> fmt::Result {
    if x.is_nan() {
        return out.write_str("nan");
    }
    if x.is_infinite() {
        return out.write_str(if x > 0.0 { "inf" } else { "-inf" });
    }
    if x == 0.0 {
        return out.write_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
    }
    if (1e-4..1e16).contains(&x.abs()) {
        // Where Python writes no exponent, Rust's `Display` writes the same shortest digits;
        // only a whole number lacks Python's `.0`.
        let mut fixed = Small::new();
        write!(fixed, "{x}")?;
        out.write_str(fixed.as_str())?;
        if !fixed.as_str().contains('.') {
            out.write_str(".0")?;
        }
        return Ok(());
    }
    let mut sci = Small::new();
    write!(sci, "{:e}", x.abs())?;
    let sci = sci.as_str();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().map_err(|_| fmt::Error)?;
    let mut digits = Small::new();
    for c in mantissa.chars().filter(|c| *c != '.') {
        digits.write_char(c)?;
    }
    let digits = digits.as_str();
    if x < 0.0 {
        out.write_char('-')?;
    }
    let point = exp + 1; // digits before the decimal point
    if !(-4 < point && point <= 16) {
        out.write_str(&digits[..1])?;
        if digits.len() > 1 {
            write!(out, ".{}", &digits[1..])?;
        }
        let sign = if exp < 0 { '-' } else { '+' };
        write!(out, "e{sign}{:02}", exp.unsigned_abs())
    } else if point <= 0 {
        out.write_str("0.")?;
        for _ in 0..-point {
            out.write_char('0')?;
        }
        out.write_str(digits)
    } else if point as usize >= digits.len() {
        out.write_str(digits)?;
        for _ in 0..point as usize - digits.len() {
            out.write_char('0')?;
        }
        out.write_str(".0")
    } else {
        let (int, frac) = digits.split_at(point as usize);
        write!(out, "{int}.{frac}")
    }
}

/// A small text buffer on the stack, for numbers.
pub(crate) struct Small {
    buf: [u8; 48],
    len: usize,
}

impl Small {
    pub(crate) fn new() -> Small {
        Small {
            buf: [0; 48],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub(crate) fn display(&mut self, n: impl fmt::Display) -> &str {
        self.len = 0;
        let _ = write!(self, "{n}");
        self.as_str()
    }

    pub(crate) fn py_float(&mut self, x: f64) -> &str {
        self.len = 0;
        let _ = write_py_float(self, x);
        self.as_str()
    }
}

impl Write for Small {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(x: f64) -> String {
        let mut s = String::new();
        write_py_float(&mut s, x).unwrap();
        s
    }

    #[test]
    fn floats_are_written_as_python_repr() {
        // Expected values are what CPython 3.13's repr() prints for the same doubles.
        let cases: &[(f64, &str)] = &[
            (1795459310.47537, "1795459310.47537"),
            (1795459757.6564763, "1795459757.6564763"),
            (475.0, "475.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (16.842636, "16.842636"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (0.0000123, "1.23e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-2.5, "-2.5"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (9999999999999998.0, "9999999999999998.0"),
            (0.00010000000000000002, "0.00010000000000000002"),
            (-1795459310.0, "-1795459310.0"),
            (123.456e10, "1234560000000.0"),
        ];
        for &(x, want) in cases {
            assert_eq!(py(x), want, "{x:e}");
        }
    }
}
