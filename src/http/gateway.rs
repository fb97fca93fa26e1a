//! API Gateway's HTTP API in front of the router: an event (payload format 2.0) becomes an HTTP request, and the
//! router's response becomes the JSON API Gateway reads back. keystead's own adapter rather than lambda_http's
//! general one: it reads only what the function uses (the method, the path and query, headers, cookies, the body,
//! the API's domain and the caller's address), borrowing from the event where it can, and writes the answer in
//! one pass; lambda_http's conversions were about a third of a license check's work outside DynamoDB
//! (BENCHMARKS.md, run 12). It keeps lambda_http's rules: the event's `cookies` join into one `Cookie` header, a
//! body marked base64 is decoded, `Set-Cookie` headers leave as the answer's `cookies`, and a body is sent as
//! text when its type is text (else base64).

use std::borrow::Cow;
use std::fmt;

use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

/// What a handler may know of API Gateway's request context (a request extension).
#[derive(Clone, Debug, Default)]
pub struct Gateway {
    /// The API's domain: links in emails point there.
    pub domain_name: Option<String>,
    /// The caller's address as API Gateway saw it.
    pub source_ip: Option<String>,
}

/// An event that is not an HTTP API request, or an answer that could not be read. API Gateway sends no such
/// event; the invocation fails (API Gateway answers 500), as it did with lambda_http.
#[derive(Debug, thiserror::Error)]
#[error("API Gateway event: {0}")]
pub struct GatewayError(String);

/// The router's response, as API Gateway's answer.
pub async fn answer(response: Response) -> Result<Answer, GatewayError> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| GatewayError(format!("reading the answer's body: {e}")))?;
    Ok(Answer {
        text: is_text(&parts.headers),
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// The router's answer, as API Gateway's HTTP API reads it: `statusCode`, `headers` (each name once),
/// `body` (text, or base64 with `isBase64Encoded`), and `cookies` (the `Set-Cookie` headers).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// Every header, `Set-Cookie` ones included (the JSON moves those to `cookies`).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether `body` goes as text (by its `Content-Type`) or base64.
    pub text: bool,
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut answer = serializer.serialize_struct("Answer", 5)?;
        answer.serialize_field("statusCode", &self.status.as_u16())?;
        answer.serialize_field("headers", &JoinedHeaders(&self.headers))?;
        if self.text {
            answer.serialize_field("body", &String::from_utf8_lossy(&self.body))?;
        } else {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&self.body);
            answer.serialize_field("body", &encoded)?;
        }
        answer.serialize_field("isBase64Encoded", &!self.text)?;
        answer.serialize_field("cookies", &Cookies(&self.headers))?;
        answer.end()
    }
}

/// Each header name once, its values joined with `, ` (API Gateway's HTTP API has no multi-value headers);
/// `Set-Cookie` goes to `cookies` instead.
struct JoinedHeaders<'a>(&'a HeaderMap);

impl Serialize for JoinedHeaders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names = self.0.keys().filter(|name| *name != SET_COOKIE);
        let mut map = serializer.serialize_map(None)?;
        for name in names {
            let mut values = self.0.get_all(name).iter();
            let first = values.next().map_or(Cow::Borrowed(""), lossy);
            match values.next() {
                None => map.serialize_entry(name.as_str(), &first)?,
                Some(second) => {
                    let mut joined = format!("{first}, {}", lossy(second));
                    for value in values {
                        joined.push_str(", ");
                        joined.push_str(&lossy(value));
                    }
                    map.serialize_entry(name.as_str(), &joined)?;
                }
            }
        }
        map.end()
    }
}

struct Cookies<'a>(&'a HeaderMap);

impl Serialize for Cookies<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for cookie in self.0.get_all(SET_COOKIE) {
            seq.serialize_element(&lossy(cookie))?;
        }
        seq.end()
    }
}

fn lossy(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

/// lambda_http's rule: a body is text unless it is content-encoded or its type is not a text type.
fn is_text(headers: &HeaderMap) -> bool {
    const PREFIXES: [&str; 5] = [
        "text",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/yaml",
    ];
    const SUFFIXES: [&str; 3] = ["+xml", "+yaml", "+json"];
    if headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let Some(content_type) = headers.get(CONTENT_TYPE) else {
        return true;
    };
    let content_type = content_type.to_str().unwrap_or_default();
    let mime = content_type.trim().split(';').next().unwrap_or_default();
    PREFIXES
        .iter()
        .any(|prefix| content_type.starts_with(prefix))
        || SUFFIXES.iter().any(|suffix| mime.ends_with(suffix))
        || headers
            .get("x-lambda-http-content-encoding")
            .is_some_and(|value| value == "text")
}

// ---------------------------------------------------------------------------------------------------------------
// The event.

/// The fields of an HTTP API event (payload format 2.0) the function reads; the rest are skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(borrow, default)]
    raw_path: Option<Text<'a>>,
    #[serde(borrow, default)]
    raw_query_string: Option<Text<'a>>,
    #[serde(default)]
    headers: Headers,
    #[serde(borrow, default)]
    cookies: Option<Vec<Text<'a>>>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
    #[serde(borrow)]
    request_context: Context<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Context<'a> {
    #[serde(borrow, default)]
    domain_name: Option<Text<'a>>,
    #[serde(borrow)]
    http: HttpContext<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpContext<'a> {
    #[serde(borrow)]
    method: Text<'a>,
    #[serde(borrow, default)]
    source_ip: Option<Text<'a>>,
}

/// A string, borrowed from the event unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The event's headers: one string per name (API Gateway joins repeated ones with commas), or a list.
#[derive(Default)]
struct Headers(HeaderMap);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_option(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Headers;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map of header names to values")
    }

    fn visit_none<E: de::Error>(self) -> Result<Headers, E> {
        Ok(Headers::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
        Ok(Headers::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Headers, D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<Headers, M::Error> {
        let mut headers = HeaderMap::with_capacity(access.size_hint().unwrap_or(8));
        while let Some(Text(name)) = access.next_key::<Text<'de>>()? {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| de::Error::custom(format!("invalid header name {name:?}")))?;
            for value in access.next_value::<Values<'de>>()?.0 {
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| de::Error::custom(format!("invalid value of header {name}")))?;
                headers.append(&name, value);
            }
        }
        Ok(Headers(headers))
    }
}

/// One header's value, or its list of values.
struct Values<'a>(Vec<Cow<'a, str>>);

impl<'de> Deserialize<'de> for Values<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValuesVisitor;
        impl<'de> Visitor<'de> for ValuesVisitor {
            type Value = Values<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a header value or a list of them")
            }

            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Values<'de>, E> {
                Ok(Values(vec![Cow::Borrowed(value)]))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Values<'de>, E> {
                Ok(Values(vec![Cow::Owned(value.to_owned())]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Values<'de>, A::Error> {
                let mut values = Vec::new();
                while let Some(Text(value)) = seq.next_element::<Text<'de>>()? {
                    values.push(value);
                }
                Ok(Values(values))
            }
        }
        deserializer.deserialize_any(ValuesVisitor)
    }
}

/// The HTTP request an event carries.
pub fn request(event: &str) -> Result<Request<Body>, GatewayError> {
    let event: Event<'_> =
        serde_json::from_str(event).map_err(|e| GatewayError(format!("unreadable: {e}")))?;
    let method = Method::from_bytes(event.request_context.http.method.0.as_bytes())
        .map_err(|_| GatewayError("invalid method".to_owned()))?;
    let uri = uri(
        event.raw_path.as_ref().map_or("", |p| &p.0),
        event.raw_query_string.as_ref().map_or("", |q| &q.0),
    )?;
    let mut headers = event.headers.0;
    if let Some(cookies) = &event.cookies {
        let joined = cookies
            .iter()
            .map(|c| c.0.as_ref())
            .collect::<Vec<_>>()
            .join("; ");
        if let Ok(value) = HeaderValue::from_str(&joined) {
            headers.insert(COOKIE, value);
        }
    }
    let body = match event.body {
        None => Body::empty(),
        Some(body) if event.is_base64_encoded == Some(true) => Body::from(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| GatewayError(format!("body is not base64: {e}")))?,
        ),
        Some(body) => Body::from(body),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request.extensions_mut().insert(Gateway {
        domain_name: event.request_context.domain_name.map(|d| d.0.into_owned()),
        source_ip: event
            .request_context
            .http
            .source_ip
            .map(|ip| ip.0.into_owned()),
    });
    Ok(request)
}

/// The request's path and query. A path of plain characters is taken as it is; any other goes through the URL
/// standard's path rules first (percent-encoding what must be, resolving `.` and `..`), as lambda_http did.
fn uri(raw_path: &str, query: &str) -> Result<Uri, GatewayError> {
    let path = if is_plain(raw_path) {
        Cow::Borrowed(raw_path)
    } else {
        let url = url::Url::parse(&format!("https://localhost{raw_path}"))
            .map_err(|e| GatewayError(format!("invalid path: {e}")))?;
        // A `?` in the path starts a query there, as it did for lambda_http.
        match url.query() {
            Some(inner) => Cow::Owned(format!("{}?{inner}", url.path())),
            None => Cow::Owned(url.path().to_owned()),
        }
    };
    let mut target = String::with_capacity(path.len() + query.len() + 1);
    target.push_str(&path);
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    Uri::try_from(target).map_err(|e| GatewayError(format!("invalid path or query: {e}")))
}

/// Whether the URL standard leaves `path` as it is: it starts with `/`, has only characters a path keeps, and no
/// `.` or `..` segment (spelled out or percent-encoded).
fn is_plain(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/%!$&'()*+,;=:@".contains(&b))
        && !path
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'e'))
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(raw_path: &str, extra: &str) -> String {
        format!(
            r#"{{"version":"2.0","rawPath":{},"rawQueryString":"a=1&b=%20","headers":{{"content-type":"application/json","x-many":["1","2"]}},{extra}"requestContext":{{"domainName":"api.example","http":{{"method":"POST","sourceIp":"203.0.113.7"}}}}}}"#,
            serde_json::json!(raw_path)
        )
    }

    #[test]
    fn an_event_becomes_the_request_it_carries() {
        let request = request(&event(
            "/v1/t/licenses/validate",
            r#""body":"eyJrIjoxfQ==","isBase64Encoded":true,"cookies":["a=1","b=2"],"#,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/v1/t/licenses/validate?a=1&b=%20");
        assert_eq!(request.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(request.headers().get_all("x-many").iter().count(), 2);
        assert_eq!(request.headers()[COOKIE], "a=1; b=2");
        let gateway = request
            .extensions()
            .get::<Gateway>()
            .cloned()
            .unwrap_or_default();
        assert_eq!(gateway.domain_name.as_deref(), Some("api.example"));
        assert_eq!(gateway.source_ip.as_deref(), Some("203.0.113.7"));
    }

    #[test]
    fn paths_follow_the_url_standard() {
        for (raw, expected) in [
            ("/v1/t/jwks.json", "/v1/t/jwks.json"),
            ("/files/My%20App.dmg", "/files/My%20App.dmg"),
            ("/a/b/../c", "/a/c"),
            ("/a/%2e%2E/c", "/c"),
            ("/a b/\"q\"", "/a%20b/%22q%22"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("", "/"),
        ] {
            let uri = uri(raw, "").unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(uri.path(), expected, "{raw}");
        }
        let uri = uri("/portal/t/licenses?notice=seat-freed", "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(uri, "/portal/t/licenses?notice=seat-freed");
    }

    #[test]
    fn events_that_are_not_requests_are_refused() {
        for bad in [
            "{}".to_owned(),
            r#"{"requestContext":{"http":{}}}"#.to_owned(),
            event("/x", r#""body":"not base64!","isBase64Encoded":true,"#),
            event("/x", r#""headers":{"bad name":"v"},"#),
        ] {
            assert!(request(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_written_as_api_gateway_reads_them() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.append(SET_COOKIE, HeaderValue::from_static("s=1; Secure"));
        headers.append(SET_COOKIE, HeaderValue::from_static("t=2"));
        headers.append("vary", HeaderValue::from_static("a"));
        headers.append("vary", HeaderValue::from_static("b"));
        let text = Answer {
            text: is_text(&headers),
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from_static(b"{\"ok\":true}"),
        };
        assert_eq!(
            serde_json::to_string(&text).unwrap_or_default(),
            r#"{"statusCode":201,"headers":{"content-type":"application/json","vary":"a, b"},"body":"{\"ok\":true}","isBase64Encoded":false,"cookies":["s=1; Secure","t=2"]}"#
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let binary = Answer {
            text: is_text(&headers),
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(&[0, 255]),
        };
        assert_eq!(
            serde_json::to_string(&binary).unwrap_or_default(),
            r#"{"statusCode":200,"headers":{"content-type":"application/octet-stream"},"body":"AP8=","isBase64Encoded":true,"cookies":[]}"#
        );
    }

    #[test]
    fn text_types_follow_lambda_http() {
        let is = |content_type: Option<&str>, encoding: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(ct) = content_type {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_str(ct).unwrap_or_else(|e| panic!("{e}")),
                );
            }
            if let Some(enc) = encoding {
                headers.insert(
                    CONTENT_ENCODING,
                    HeaderValue::from_str(enc).unwrap_or_else(|e| panic!("{e}")),
                );
            }
            is_text(&headers)
        };
        assert!(is(None, None));
        assert!(is(Some("text/html; charset=utf-8"), None));
        assert!(is(Some("application/rss+xml; charset=utf-8"), None));
        assert!(is(Some("application/json"), None));
        assert!(!is(Some("application/json"), Some("gzip")));
        assert!(!is(Some("application/octet-stream"), None));
    }
}
