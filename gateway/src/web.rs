//! Small HTTP pieces shared by the dashboard's file server (`http.rs`), the WebSocket endpoint
//! (`ws.rs`) and the API (`api/`): the response body type, plain-text answers, and reading
//! percent-encoded paths and query strings. A leaf: it imports nothing from the crate, so the
//! modules above it never import each other for these.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

/// The body of every response the gateway writes: whole, in memory.
pub type Body = Full<Bytes>;

/// A `text/plain` response that is never cached.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

/// Decodes `%XX` escapes (two hex digits each); `None` for a broken escape or a result that is
/// not UTF-8. `+` stays `+`: paths and our query values are not form-encoded.
pub(crate) fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |b: u8| char::from(b).to_digit(16);
            let value = digit(hex[0])? * 16 + digit(hex[1])?;
            out.push(u8::try_from(value).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of `name` in a URL query string: the first `name=value` pair, `None`
/// when absent, empty or not decodable.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| percent_decode(value))
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_need_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("1+1").as_deref(), Some("1+1"));
        // `u8::from_str_radix` would read "+1" as a number.
        for broken in ["%+1", "%-1", "%4", "%", "%zz", "%FF"] {
            assert_eq!(percent_decode(broken), None, "{broken}");
        }
    }

    #[test]
    fn query_parameters() {
        let q = Some("filter=a%2F%23&token=sbt1.x-y_z&empty=");
        assert_eq!(query_param(q, "filter").as_deref(), Some("a/#"));
        assert_eq!(query_param(q, "token").as_deref(), Some("sbt1.x-y_z"));
        assert_eq!(query_param(q, "empty"), None);
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "token"), None);
        assert_eq!(query_param(Some("tokens=1"), "token"), None);
        // Wildcards of a filter stay as they are (`+` is not a space here).
        assert_eq!(
            query_param(Some("filter=a/+/c"), "filter").as_deref(),
            Some("a/+/c")
        );
    }
}
