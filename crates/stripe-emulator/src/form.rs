//! Stripe's parameter encoding: `application/x-www-form-urlencoded` pairs
//! whose keys nest with brackets (`metadata[order_id]`, `expand[]`,
//! `expand[0]`, `automatic_payment_methods[enabled]`). Every endpoint takes
//! the parameters it knows; whatever is left is a `parameter_unknown` error,
//! as at Stripe.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// Stripe's metadata limits.
const METADATA_MAX_KEYS: usize = 50;
const METADATA_MAX_KEY_LEN: usize = 40;
const METADATA_MAX_VALUE_LEN: usize = 500;

#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
    used: Vec<bool>,
}

/// A change to a metadata hash: `metadata=` clears it, `metadata[k]=` deletes
/// one key, `metadata[k]=v` sets one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MetadataUpdate {
    pub clear: bool,
    pub entries: Vec<(String, String)>,
}

impl MetadataUpdate {
    pub fn apply(&self, metadata: &mut BTreeMap<String, String>) -> Result<(), ApiError> {
        if self.clear {
            metadata.clear();
        }
        for (key, value) in &self.entries {
            if value.is_empty() {
                metadata.remove(key);
            } else {
                metadata.insert(key.clone(), value.clone());
            }
        }
        if metadata.len() > METADATA_MAX_KEYS {
            return Err(ApiError::invalid(format!(
                "Invalid metadata: metadata can have at most {METADATA_MAX_KEYS} keys."
            ))
            .param("metadata"));
        }
        Ok(())
    }
}

impl Params {
    pub fn parse(bytes: &[u8]) -> Self {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let used = vec![false; pairs.len()];
        Self { pairs, used }
    }

    pub fn extend(&mut self, other: Params) {
        self.pairs.extend(other.pairs);
        self.used.extend(other.used);
    }

    /// Every pair, sorted: what an idempotency key is compared against.
    pub fn fingerprint(&self) -> Vec<(String, String)> {
        let mut pairs = self.pairs.clone();
        pairs.sort();
        pairs
    }

    /// The last value of `key`, without consuming it.
    pub fn peek(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of `key` (Stripe takes the last of repeated keys).
    pub fn string(&mut self, key: &str) -> Option<String> {
        let mut found = None;
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if k == key {
                found = Some(v.clone());
                if let Some(used) = self.used.get_mut(i) {
                    *used = true;
                }
            }
        }
        found
    }

    /// A string that, when given, must not be empty; `""` means "unset"
    /// (`Some(None)`), as Stripe treats empty values.
    pub fn nullable_string(&mut self, key: &str) -> Option<Option<String>> {
        self.string(key)
            .map(|value| if value.is_empty() { None } else { Some(value) })
    }

    pub fn required_string(&mut self, key: &str) -> Result<String, ApiError> {
        match self.string(key) {
            None => Err(ApiError::missing_parameter(key)),
            Some(value) if value.is_empty() => Err(empty_value(key)),
            Some(value) => Ok(value),
        }
    }

    pub fn integer(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.string(key) {
            None => Ok(None),
            Some(value) if value.is_empty() => Err(empty_value(key)),
            Some(value) => value.trim().parse::<i64>().map(Some).map_err(|_| {
                ApiError::validation(format!("Invalid integer: {value}"))
                    .code("parameter_invalid_integer")
                    .param(key)
            }),
        }
    }

    /// A positive integer (`amount`, `limit`…): at least 1.
    pub fn positive_integer(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.integer(key)? {
            Some(value) if value < 1 => Err(ApiError::validation(
                "This value must be greater than or equal to 1.",
            )
            .code("parameter_invalid_integer")
            .param(key)),
            other => Ok(other),
        }
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.string(key) {
            None => Ok(None),
            Some(value) => match value.as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(ApiError::validation(format!("Invalid boolean: {value}")).param(key)),
            },
        }
    }

    /// One of `allowed`; `""` unsets (`Some(None)`).
    pub fn choice(
        &mut self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Option<Option<String>>, ApiError> {
        match self.nullable_string(key) {
            Some(Some(value)) if !allowed.contains(&value.as_str()) => Err(ApiError::validation(
                format!("Invalid {key}: must be one of {}", join_or(allowed)),
            )
            .param(key)),
            other => Ok(other),
        }
    }

    /// `name[k]=v` pairs (and `name=` to clear), validated as Stripe
    /// validates metadata.
    pub fn metadata(&mut self, name: &str) -> Result<Option<MetadataUpdate>, ApiError> {
        let mut update = MetadataUpdate::default();
        let mut seen = false;
        let prefix = format!("{name}[");
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if k == name {
                if !v.is_empty() {
                    return Err(ApiError::validation("Invalid object").param(name));
                }
                update.clear = true;
                update.entries.clear();
            } else if let Some(inner) = k.strip_prefix(&prefix).and_then(|r| r.strip_suffix(']')) {
                if inner.is_empty() || inner.contains('[') || inner.contains(']') {
                    return Err(ApiError::validation("Invalid object").param(name));
                }
                if inner.chars().count() > METADATA_MAX_KEY_LEN {
                    return Err(ApiError::validation(format!(
                        "Metadata keys can have a maximum length of {METADATA_MAX_KEY_LEN} characters."
                    ))
                    .param(&format!("{name}[{inner}]")));
                }
                if v.chars().count() > METADATA_MAX_VALUE_LEN {
                    return Err(ApiError::validation(format!(
                        "Metadata values can have a maximum length of {METADATA_MAX_VALUE_LEN} characters."
                    ))
                    .param(&format!("{name}[{inner}]")));
                }
                update.entries.retain(|(key, _)| key != inner);
                update.entries.push((inner.to_string(), v.clone()));
            } else {
                continue;
            }
            seen = true;
            if let Some(used) = self.used.get_mut(i) {
                *used = true;
            }
        }
        if update.entries.len() > METADATA_MAX_KEYS {
            return Err(ApiError::validation(format!(
                "Invalid metadata: metadata can have at most {METADATA_MAX_KEYS} keys."
            ))
            .param(name));
        }
        Ok(seen.then_some(update))
    }

    /// `name[]=a&name[]=b` or `name[0]=a&name[1]=b`.
    pub fn list(&mut self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let mut items: Vec<(Option<usize>, usize, String)> = Vec::new();
        let prefix = format!("{name}[");
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            let Some(inner) = k.strip_prefix(&prefix).and_then(|r| r.strip_suffix(']')) else {
                continue;
            };
            let index = if inner.is_empty() {
                None
            } else {
                match inner.parse::<usize>() {
                    Ok(n) => Some(n),
                    Err(_) => continue,
                }
            };
            items.push((index, i, v.clone()));
            if let Some(used) = self.used.get_mut(i) {
                *used = true;
            }
        }
        if items.is_empty() {
            return Ok(None);
        }
        items.sort_by_key(|(index, position, _)| (index.unwrap_or(usize::MAX), *position));
        Ok(Some(items.into_iter().map(|(_, _, v)| v).collect()))
    }

    /// `expand[]`: the fields the caller wants embedded; only `allowed`.
    pub fn expand(&mut self, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
        let fields = self.list("expand")?.unwrap_or_default();
        for field in &fields {
            if !allowed.contains(&field.as_str()) {
                return Err(ApiError::validation(format!(
                    "This property cannot be expanded ({field})."
                ))
                .param("expand"));
            }
        }
        Ok(fields)
    }

    /// Fails on the first parameter nobody took.
    pub fn finish(&self) -> Result<(), ApiError> {
        match self.pairs.iter().zip(&self.used).find(|(_, used)| !**used) {
            Some(((key, _), _)) => Err(ApiError::unknown_parameter(key)),
            None => Ok(()),
        }
    }
}

fn empty_value(key: &str) -> ApiError {
    ApiError::validation(format!(
        "You passed an empty string for '{key}'. We assume empty values are an attempt to unset a parameter; however '{key}' cannot be unset. You should remove '{key}' from your request or supply a non-empty value."
    ))
    .code("parameter_invalid_empty")
    .param(key)
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{}, or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nested_keys_and_unknown_parameters() {
        let mut p = Params::parse(
            b"amount=100&metadata[order_id]=42&metadata[note]=a%20b&expand[]=customer&bogus=1",
        );
        assert_eq!(p.integer("amount").unwrap(), Some(100));
        let metadata = p.metadata("metadata").unwrap().unwrap();
        assert_eq!(
            metadata.entries,
            vec![
                ("order_id".to_string(), "42".to_string()),
                ("note".to_string(), "a b".to_string())
            ]
        );
        assert_eq!(p.expand(&["customer"]).unwrap(), vec!["customer"]);
        let err = p.finish().unwrap_err();
        assert_eq!(err.body()["error"]["code"], "parameter_unknown");
        assert_eq!(err.body()["error"]["param"], "bogus");
    }

    #[test]
    fn metadata_clear_and_delete() {
        let mut p = Params::parse(b"metadata=&metadata[a]=1&metadata[b]=");
        let update = p.metadata("metadata").unwrap().unwrap();
        let mut current = BTreeMap::from([
            ("old".to_string(), "x".to_string()),
            ("b".to_string(), "y".to_string()),
        ]);
        update.apply(&mut current).unwrap();
        assert_eq!(
            current,
            BTreeMap::from([("a".to_string(), "1".to_string())])
        );
        assert!(Params::parse(b"metadata=x").metadata("metadata").is_err());
    }

    #[test]
    fn lists_in_both_encodings() {
        let mut p = Params::parse(b"expand[1]=b&expand[0]=a");
        assert_eq!(p.list("expand").unwrap().unwrap(), vec!["a", "b"]);
        let mut p = Params::parse(b"expand[]=x&expand[]=y");
        assert_eq!(p.list("expand").unwrap().unwrap(), vec!["x", "y"]);
        p.finish().unwrap();
    }

    #[test]
    fn integers_and_booleans_are_validated() {
        assert!(Params::parse(b"amount=abc").integer("amount").is_err());
        assert!(Params::parse(b"amount=").integer("amount").is_err());
        assert!(Params::parse(b"amount=0")
            .positive_integer("amount")
            .is_err());
        assert!(Params::parse(b"confirm=yes").boolean("confirm").is_err());
        assert_eq!(
            Params::parse(b"confirm=true").boolean("confirm").unwrap(),
            Some(true)
        );
    }
}
