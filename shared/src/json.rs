//! JSON request bodies that are objects, as both services' documents say they are.
//!
//! serde's derived structs also deserialize from a JSON array, reading its items as the fields
//! in order (`[5]` as `{"by": 5}`, `[]` as all defaults). No contract here promises that, so a
//! body read as a struct goes through [`Object`], which refuses anything but an object with a
//! data error (a 422, as a wrongly shaped object gets).

use serde::de::{DeserializeOwned, Error};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// `T`, read only from a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<T> Object<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Map::<String, Value>::deserialize(deserializer)?;
        T::deserialize(Value::Object(fields))
            .map(Object)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct By {
        #[serde(default)]
        by: i64,
    }

    #[test]
    fn an_object_is_read_as_the_struct() {
        let read: Object<By> = serde_json::from_str(r#"{"by": 5}"#).unwrap();
        assert_eq!(read.into_inner(), By { by: 5 });
    }

    #[test]
    fn arrays_and_other_values_are_data_errors() {
        for text in ["[]", "[5]", "5", r#""x""#, "true"] {
            let error = serde_json::from_str::<Object<By>>(text).unwrap_err();
            assert!(error.is_data(), "{text}: {error}");
        }
        let error = serde_json::from_str::<Object<By>>(r#"{"bye": 1}"#).unwrap_err();
        assert!(error.is_data(), "{error}");
    }
}
