//! JSON has no NaN: serde_json writes non-finite floats as `null`, which then
//! fails to read back into an `f64`. Undefined statistics (a Welch df with zero
//! variance, a t from constant samples) are NaN, so they travel as `null` and
//! come back as NaN.

use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        serializer.serialize_f64(*value)
    } else {
        serializer.serialize_none()
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}
