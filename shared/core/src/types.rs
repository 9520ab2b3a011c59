//! Newtypes built only by parsing: once a value exists it is valid.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Every reason an input was refused, not just the first one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reasons(pub Vec<String>);

impl Reasons {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, field: &str, problem: impl fmt::Display) {
        self.0.push(format!("{field}: {problem}"));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Ok(value)` when nothing was refused.
    pub fn into_result<T>(self, value: T) -> Result<T, Reasons> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

/// Identifiers share one shape: 1 to 128 printable characters without
/// whitespace or `/` (they appear in URLs and store keys).
fn parse_identifier(kind: &str, raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err(format!("{kind} must not be empty"));
    }
    if raw.len() > 128 {
        return Err(format!("{kind} is longer than 128 characters"));
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(format!(
            "{kind} {raw:?} contains whitespace, a control character or '/'"
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, String> {
                parse_identifier($kind, raw).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                Self::parse(&raw)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// A stock keeping unit, the merchant's own product code.
    Sku, "sku");
identifier!(
    /// A warehouse or store that holds stock.
    LocationId, "location");
identifier!(
    /// A channel's order number.
    OrderId, "order_id");
identifier!(
    /// A sales channel (`shopify-eu`, `bol`, ...).
    Channel, "channel");
identifier!(
    /// A configured sender of webhooks or events.
    SourceName, "source");

/// A count of units: whole and never negative.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);
    /// Far above any real shelf, low enough that sums never overflow.
    pub const MAX: u32 = 1_000_000_000;

    pub fn new(n: u32) -> Result<Self, String> {
        if n > Self::MAX {
            Err(format!("quantity {n} is above {}", Self::MAX))
        } else {
            Ok(Self(n))
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// ISO 4217 currency code: three upper-case letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(format!(
                "currency {raw:?} is not an ISO 4217 code such as \"EUR\""
            )),
        }
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}
impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money that is never negative, in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

impl Money {
    pub fn parse_amount(raw: &serde_json::Value) -> Result<Decimal, String> {
        let amount = match raw {
            serde_json::Value::String(s) => s
                .trim()
                .parse::<Decimal>()
                .map_err(|_| format!("{s:?} is not a decimal amount such as \"19.99\""))?,
            // Numbers are accepted only when they are exact in JSON's text.
            serde_json::Value::Number(n) => n
                .to_string()
                .parse::<Decimal>()
                .map_err(|_| format!("{n} is not a decimal amount"))?,
            other => return Err(format!("expected a decimal string, got {other}")),
        };
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(format!("amount {amount} is negative"));
        }
        Ok(amount)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_refuse_blank_slashes_and_whitespace() {
        assert!(Sku::parse("TSHIRT-M").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse("a/b").is_err());
        assert!(Sku::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn currency_is_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EURO").is_err());
    }

    #[test]
    fn money_keeps_exact_decimals_and_refuses_negatives() {
        let v = serde_json::json!("10.10");
        assert_eq!(Money::parse_amount(&v).unwrap().to_string(), "10.10");
        assert!(Money::parse_amount(&serde_json::json!("-1")).is_err());
        assert!(Money::parse_amount(&serde_json::json!("abc")).is_err());
        assert_eq!(
            Money::parse_amount(&serde_json::json!(19.99))
                .unwrap()
                .to_string(),
            "19.99"
        );
    }

    #[test]
    fn serde_refuses_invalid_identifiers() {
        assert!(serde_json::from_str::<Sku>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<Sku>("\"A-1\"").unwrap().as_str(),
            "A-1"
        );
    }
}
