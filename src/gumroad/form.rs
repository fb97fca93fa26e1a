//! A strict reader for ping bodies. Gumroad sends `application/x-www-form-urlencoded` with nested keys
//! (`card[visual]`) and custom fields as extra keys, sometimes repeating one of its own names; the first
//! occurrence of a key is always Gumroad's, so lookups return the first.

/// Larger bodies are refused with 413 before they are parsed. A real ping is a few kilobytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("Request body too large (limit {MAX_BODY_BYTES} bytes)")]
    TooLarge,
    #[error("Malformed form body: {0}")]
    MalformedForm(&'static str),
    #[error("Malformed JSON body: {0}")]
    MalformedJson(String),
    #[error(
        "Unsupported content type '{0}': send application/x-www-form-urlencoded or application/json"
    )]
    UnsupportedMediaType(String),
}

/// The ordered key/value pairs of a ping body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses a body according to its `Content-Type` (form when absent).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, BodyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        let media_type = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|mt| mt.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match media_type.as_str() {
            "" | "application/x-www-form-urlencoded" => Self::from_urlencoded(body),
            "application/json" => Self::from_json(body),
            _ => Err(BodyError::UnsupportedMediaType(
                media_type.chars().take(100).collect(),
            )),
        }
    }

    pub fn from_urlencoded(body: &[u8]) -> Result<Self, BodyError> {
        let mut pairs = Vec::new();
        for segment in body.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
            let eq = segment
                .iter()
                .position(|&b| b == b'=')
                .ok_or(BodyError::MalformedForm("a field without '='"))?;
            let key = decode_component(&segment[..eq])?;
            if key.is_empty() {
                return Err(BodyError::MalformedForm("a field with an empty name"));
            }
            pairs.push((key, decode_component(&segment[eq + 1..])?));
        }
        Ok(Self { pairs })
    }

    /// A JSON object with the same keys as the form. Nested objects become `outer[inner]` keys and arrays
    /// `key[]` pairs, exactly as Gumroad would have encoded them in a form.
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| BodyError::MalformedJson(e.to_string()))?;
        let serde_json::Value::Object(object) = value else {
            return Err(BodyError::MalformedJson(
                "expected a JSON object".to_owned(),
            ));
        };
        let mut pairs = Vec::new();
        for (key, value) in object {
            flatten_json(key, value, &mut pairs, 0)?;
        }
        Ok(Self { pairs })
    }

    /// A form from pairs already decoded (a sale read from Gumroad's API, in the ping's field names).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// Every pair, in the order they came.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value for `key`, with surrounding whitespace trimmed, or `None` when empty.
    pub fn get_nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every value of a repeated key such as `purchase_ids[]`.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `true` only for Gumroad's literal `true`.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v.trim() == "true")
    }
}

fn flatten_json(
    key: String,
    value: serde_json::Value,
    pairs: &mut Vec<(String, String)>,
    depth: usize,
) -> Result<(), BodyError> {
    use serde_json::Value;
    if depth > 4 {
        return Err(BodyError::MalformedJson("nested too deeply".to_owned()));
    }
    match value {
        Value::Null => pairs.push((key, String::new())),
        Value::Bool(b) => pairs.push((key, b.to_string())),
        Value::Number(n) => pairs.push((key, n.to_string())),
        Value::String(s) => pairs.push((key, s)),
        Value::Array(items) => {
            let name = format!("{key}[]");
            for item in items {
                flatten_json(name.clone(), item, pairs, depth + 1)?;
            }
        }
        Value::Object(object) => {
            for (inner, value) in object {
                flatten_json(format!("{key}[{inner}]"), value, pairs, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Percent-decodes one key or value (`+` is a space), refusing a `%` not followed by two hex digits and any
/// result that is not UTF-8.
fn decode_component(raw: &[u8]) -> Result<String, BodyError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .ok_or(BodyError::MalformedForm("bad percent-encoding"))?;
                let high = hex_value(hex[0]);
                let low = hex_value(hex[1]);
                match (high, low) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(BodyError::MalformedForm("bad percent-encoding")),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| BodyError::MalformedForm("invalid UTF-8"))?;
    if text.contains('\0') {
        return Err(BodyError::MalformedForm("a NUL character"));
    }
    Ok(text)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::from_urlencoded(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn decodes_gumroad_encoding() {
        let f = form(
            "email=jane.doe%2Bgr%40example.com&product_name=MyApp%20Pro&card%5Bvisual%5D=%2A%2A%2A%2A%204242&x=a+b",
        );
        assert_eq!(f.get("email"), Some("jane.doe+gr@example.com"));
        assert_eq!(f.get("product_name"), Some("MyApp Pro"));
        assert_eq!(f.get("card[visual]"), Some("**** 4242"));
        assert_eq!(f.get("x"), Some("a b"));
    }

    #[test]
    fn the_first_occurrence_of_a_key_wins() {
        let f = form(
            "email=real%40example.com&email=custom-field-value&purchase_ids%5B%5D=a&purchase_ids%5B%5D=b",
        );
        assert_eq!(f.get("email"), Some("real@example.com"));
        assert_eq!(f.get_all("purchase_ids[]").collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn refuses_malformed_bodies() {
        for bad in [
            "a=%", "a=%4", "a=%zz", "a=%ff", "noequals", "=value", "a=%00",
        ] {
            assert!(Form::from_urlencoded(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(Form::from_urlencoded(&[b'a', b'=', 0xff]).is_err());
    }

    #[test]
    fn reads_flat_and_nested_json() {
        let f = Form::parse(
            Some("application/json; charset=utf-8"),
            br#"{"sale_id":"s1","price":2900,"test":true,"card":{"visual":"x"},"purchase_ids":["a","b"],"n":null}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.get("price"), Some("2900"));
        assert!(f.flag("test"));
        assert_eq!(f.get("card[visual]"), Some("x"));
        assert_eq!(f.get_all("purchase_ids[]").count(), 2);
        assert_eq!(f.get_nonempty("n"), None);
        assert!(Form::parse(Some("application/json"), b"[1,2]").is_err());
        assert!(Form::parse(Some("application/json"), b"{").is_err());
    }

    #[test]
    fn checks_size_and_media_type() {
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        assert_eq!(Form::parse(None, &big), Err(BodyError::TooLarge));
        assert!(matches!(
            Form::parse(Some("text/plain"), b"a=b"),
            Err(BodyError::UnsupportedMediaType(_))
        ));
        assert!(
            Form::parse(
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                b"a=b"
            )
            .is_ok()
        );
    }
}
