//! Exact money: amounts are whole cents (`i64`), never floats, so `0.1 x 3`
//! is `0.30` and not `0.30000000000000004`. JSON carries them as numbers with
//! at most two decimals.

use crate::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cents(pub i64);

/// The largest amount accepted from input: 10^13 cents keeps every product of
/// price and quantity we accept far inside `i64` and exact in an `f64`.
pub const MAX_CENTS: i64 = 10_000_000_000_000;

/// `f64::round` (half away from zero), which `core` lacks: the integer part
/// and the fraction of a float below 2^52 are both exact.
pub fn round(x: f64) -> f64 {
    let a = x.abs();
    if a >= 4_503_599_627_370_496.0 {
        return x; // already an integer
    }
    let whole = a as i64 as f64;
    let r = if a - whole >= 0.5 { whole + 1.0 } else { whole };
    if x < 0.0 { -r } else { r }
}

impl Cents {
    /// Parses a JSON number with at most two decimals: one rule for every
    /// amount, the schema's `multipleOf: 0.01`. `x` qualifies when it is
    /// the number some whole count of cents written with two decimals
    /// reads as (`19.99`, `0.07`, `5`), and nothing else: `2.5e-42` is
    /// refused, not stored as 0, and so is the double just above `0.07`.
    pub fn from_decimal(x: f64) -> Result<Cents, String> {
        if !x.is_finite() {
            return Err("must be a finite number".into());
        }
        let cents = round(x * 100.0);
        if cents.abs() > MAX_CENTS as f64 {
            return Err(format!("must be at most {}", MAX_CENTS / 100));
        }
        if cents / 100.0 != x {
            return Err("must have at most two decimal places".into());
        }
        Ok(Cents(cents as i64))
    }

    /// The amount as a JSON-friendly decimal number.
    pub fn to_decimal(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// `self x n`, or `None` on overflow.
    pub fn times(self, n: i64) -> Option<Cents> {
        self.0.checked_mul(n).map(Cents)
    }

    /// `rate_bp` basis points of `self` (2000 = 20%), rounded half away from zero to the cent.
    pub fn percent_bp(self, rate_bp: i64) -> Option<Cents> {
        let num = (self.0 as i128) * (rate_bp as i128);
        let rounded = if num >= 0 { (num + 5_000) / 10_000 } else { (num - 5_000) / 10_000 };
        i64::try_from(rounded).ok().map(Cents)
    }

    pub fn plus(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            // Keep whole amounts integers in JSON (`5`, not `5.0`), as the original did.
            s.serialize_i64(self.0 / 100)
        } else {
            s.serialize_f64(self.to_decimal())
        }
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = f64::deserialize(d)?;
        Cents::from_decimal(x).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_decimals_exactly() {
        assert_eq!(Cents::from_decimal(0.1), Ok(Cents(10)));
        assert_eq!(Cents::from_decimal(19.99), Ok(Cents(1999)));
        assert_eq!(Cents::from_decimal(0.0), Ok(Cents(0)));
        assert!(Cents::from_decimal(0.125).is_err());
        assert_eq!(Cents::from_decimal(0.07), Ok(Cents(7)));
        assert_eq!(Cents::from_decimal(-0.07), Ok(Cents(-7)));
        assert_eq!(Cents::from_decimal(1e11), Ok(Cents(MAX_CENTS)));
        // Tiny, or a hair off a cent: refused, never rounded into a price.
        assert!(Cents::from_decimal(2.5e-42).is_err());
        assert!(Cents::from_decimal(f64::from_bits(0.07f64.to_bits() + 1)).is_err());
        assert!(Cents::from_decimal(0.001).is_err());
        assert!(Cents::from_decimal(f64::NAN).is_err());
        assert!(Cents::from_decimal(1e300).is_err());
    }

    #[test]
    fn round_matches_std() {
        let xs = [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999999999999994, 1999.0000001, 4503599627370495.5, 1e300];
        for x in xs.into_iter().chain((0..2000).map(|i| i as f64 * 0.37 - 370.0)) {
            assert_eq!(round(x), x.round(), "{x}");
        }
    }

    #[test]
    fn fee_of_point_one_times_three() {
        let subtotal = Cents(10).times(3).unwrap();
        let fee = subtotal.percent_bp(2000).unwrap();
        assert_eq!(subtotal, Cents(30));
        assert_eq!(fee, Cents(6));
        assert_eq!(serde_json::to_string(&subtotal.plus(fee).unwrap()).unwrap(), "0.36");
    }

    #[test]
    fn rounds_half_up_to_the_cent() {
        assert_eq!(Cents(1).percent_bp(5000), Some(Cents(1))); // 0.5 cent -> 1
        assert_eq!(Cents(2).percent_bp(2000), Some(Cents(0))); // 0.4 cent -> 0
        assert_eq!(Cents(3).percent_bp(2000), Some(Cents(1))); // 0.6 cent -> 1
    }

    #[test]
    fn whole_amounts_serialize_as_integers() {
        assert_eq!(serde_json::to_string(&Cents(500)).unwrap(), "5");
        assert_eq!(serde_json::to_string(&Cents(505)).unwrap(), "5.05");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn every_whole_number_of_cents_is_accepted(c in -MAX_CENTS..=MAX_CENTS) {
                prop_assert_eq!(Cents::from_decimal(Cents(c).to_decimal()), Ok(Cents(c)));
            }

            #[test]
            fn decimals_round_trip_or_are_refused(x in any::<f64>()) {
                if let Ok(c) = Cents::from_decimal(x) {
                    prop_assert!(c.0.abs() <= MAX_CENTS);
                    prop_assert_eq!(Cents::from_decimal(c.to_decimal()), Ok(c));
                }
            }
        }
    }
}
