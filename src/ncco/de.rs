//! A serde deserializer over `serde_json::Value` that remembers where it is.
//!
//! serde's own errors say *what* is wrong ("invalid type: string, expected
//! u32") but not *where*. Config NCCOs and upstream replies are parsed into a
//! `serde_json::Value` first and then deserialized through [`from_value`], which
//! wraps every value with its [`Path`] and stamps the deepest path onto the
//! first error. This is the small part of `serde_path_to_error` we need,
//! specialised to `Value` so it stays short.
//!
//! Tagged enums (`Action` by `action`, `Endpoint` by `type`) are deserialized by
//! hand (see `action::TaggedVisitor`) so paths survive into their fields. They
//! ask for a struct named [`TAGGED`] whose one field is the tag; this
//! deserializer then yields the tag key first so no buffering is needed. Other
//! objects keep their key order.

use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, Expected, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{NccoError, Path, rule};

/// The `expecting` text used for URL arrays; lets a type error on an
/// `eventUrl`-like field be reported as [`rule::URL_ARRAY`].
pub(crate) const URL_ARRAY_EXPECTING: &str = "an array holding exactly one URL";

/// Struct name a tagged enum passes to `deserialize_struct`, with its tag as
/// the only field name.
pub(crate) const TAGGED: &str = "$callhook::ncco::tagged";

/// Deserializes `T` from `value`, reporting errors at their JSON path below `root`.
pub(crate) fn from_value<'v, T: de::Deserialize<'v>>(
    value: &'v Value,
    root: &Path<'_>,
) -> Result<T, NccoError> {
    T::deserialize(ValueDe { value, path: root }).map_err(|e| e.into_ncco(root))
}

/// Parses JSON bytes into `T` with path-aware errors below `root`.
pub(crate) fn from_slice<T: de::DeserializeOwned>(
    bytes: &[u8],
    root: &Path<'_>,
) -> Result<T, NccoError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| root.error(rule::JSON, e.to_string()))?;
    from_value(&value, root)
}

/// What kind of serde failure happened; decides the reported rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Custom,
    Type,
    UrlArray,
    UnknownVariant,
    UnknownField,
    MissingField,
    DuplicateField,
}

/// Error type of [`ValueDe`]: a message plus the deepest path it passed through.
#[derive(Debug)]
pub(crate) struct Error {
    kind: Kind,
    msg: String,
    path: Option<String>,
}

impl Error {
    /// Stamps `path` unless a deeper value already did.
    fn at(mut self, path: &Path<'_>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.render());
        }
        self
    }

    fn into_ncco(self, root: &Path<'_>) -> NccoError {
        let rule = match self.kind {
            Kind::Custom | Kind::Type => rule::TYPE,
            Kind::UrlArray => rule::URL_ARRAY,
            Kind::UnknownVariant => rule::ENUM,
            Kind::UnknownField => rule::UNKNOWN_FIELD,
            Kind::MissingField => rule::MISSING_FIELD,
            Kind::DuplicateField => rule::DUPLICATE_FIELD,
        };
        NccoError {
            path: self.path.unwrap_or_else(|| root.render()),
            rule,
            detail: self.msg,
        }
    }

    fn new(kind: Kind, msg: String) -> Self {
        Error {
            kind,
            msg,
            path: None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(Kind::Custom, msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn Expected) -> Self {
        let expected = exp.to_string();
        let kind = if expected == URL_ARRAY_EXPECTING {
            Kind::UrlArray
        } else {
            Kind::Type
        };
        Error::new(kind, format!("invalid type: {unexp}, expected {expected}"))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn Expected) -> Self {
        Error::new(
            Kind::Type,
            format!("invalid value: {unexp}, expected {exp}"),
        )
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Error::new(Kind::Type, format!("invalid length {len}, expected {exp}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::new(
            Kind::UnknownVariant,
            format!("unknown variant `{variant}`, expected one of {expected:?}"),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::new(
            Kind::UnknownField,
            format!("unknown field `{field}`, expected one of {expected:?}"),
        )
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(Kind::MissingField, format!("missing field `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::new(Kind::DuplicateField, format!("duplicate field `{field}`"))
    }
}

/// A `Value` together with its path.
struct ValueDe<'v, 'p> {
    value: &'v Value,
    path: &'p Path<'p>,
}

impl<'de> Deserializer<'de> for ValueDe<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let path = self.path;
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    // Without `arbitrary_precision` every other Number is an f64.
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDe {
                    items: items.iter().enumerate(),
                    path,
                };
                visitor.visit_seq(&mut seq).and_then(|v| {
                    let left = seq.items.len();
                    if left == 0 {
                        Ok(v)
                    } else {
                        Err(de::Error::invalid_length(items.len(), &"fewer elements"))
                    }
                })
            }
            Value::Object(map) => visitor.visit_map(MapDe::new(map, None, path)),
        };
        result.map_err(|e| e.at(path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match (self.value, fields) {
            (Value::Object(map), [tag]) if name == TAGGED => {
                let path = self.path;
                visitor
                    .visit_map(MapDe::new(map, Some(tag), path))
                    .map_err(|e| e.at(path))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let path = self.path;
        match self.value {
            // Closed sets in NCCOs are plain strings (unit variants).
            Value::String(s) => visitor
                .visit_enum(BorrowedStrDeserializer::<Error>::new(s))
                .map_err(|e| e.at(path)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map
        identifier ignored_any
    }
}

struct SeqDe<'v, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'v, Value>>,
    path: &'p Path<'p>,
}

impl<'de> SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            Some((index, value)) => {
                let path = self.path.index(index);
                seed.deserialize(ValueDe { value, path: &path })
                    .map(Some)
                    .map_err(|e| e.at(&path))
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'v, 'p> {
    entries: std::vec::IntoIter<(&'v String, &'v Value)>,
    pending: Option<(&'v String, &'v Value)>,
    path: &'p Path<'p>,
}

impl<'v, 'p> MapDe<'v, 'p> {
    /// Entries in document order, except that `tag` (if given and present) comes first.
    fn new(map: &'v Map<String, Value>, tag: Option<&str>, path: &'p Path<'p>) -> Self {
        let mut entries = Vec::with_capacity(map.len());
        if let Some(tag) = tag {
            entries.extend(map.get_key_value(tag));
        }
        entries.extend(map.iter().filter(|(k, _)| Some(k.as_str()) != tag));
        MapDe {
            entries: entries.into_iter(),
            pending: None,
            path,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            None => Ok(None),
            Some((key, value)) => {
                self.pending = Some((key, value));
                seed.deserialize(BorrowedStrDeserializer::<Error>::new(key))
                    .map(Some)
                    .map_err(|e| e.at(&self.path.key(key)))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        let path = self.path.key(key);
        seed.deserialize(ValueDe { value, path: &path })
            .map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
        #[serde(default)]
        s: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        list: Vec<Inner>,
    }

    fn err(v: serde_json::Value) -> NccoError {
        match from_value::<Outer>(&v, &Path::Root("root")) {
            Ok(o) => panic!("accepted {o:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn type_errors_carry_the_deepest_path() {
        let e = err(json!({"list": [{"n": 1}, {"n": "x"}]}));
        assert_eq!((e.path.as_str(), e.rule), ("root.list[1].n", rule::TYPE));
        let e = err(json!({"list": [{"n": 1, "bogus": 2}]}));
        assert_eq!(
            (e.path.as_str(), e.rule),
            ("root.list[0].bogus", rule::UNKNOWN_FIELD)
        );
        let e = err(json!({"list": [{"s": "a"}]}));
        assert_eq!(
            (e.path.as_str(), e.rule),
            ("root.list[0]", rule::MISSING_FIELD)
        );
        let e = err(json!({"list": [{"n": -3}]}));
        assert_eq!((e.path.as_str(), e.rule), ("root.list[0].n", rule::TYPE));
    }
}
