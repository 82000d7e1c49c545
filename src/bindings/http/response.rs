//! `HttpResponse`: what a request brought back, as scripts read it (`resp.status`,
//! `resp.header("content-type")`, `resp.json()`).

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, Map};

use crate::engine::binding::Family;
use crate::engine::convert::from_json;

/// One response, shared cheaply between script values.
#[derive(Clone, Default)]
pub struct HttpResponse(Arc<ResponseData>);

#[derive(Default)]
pub struct ResponseData {
    pub method: String,
    pub status: u16,
    /// Lower-case names, in the order received; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub truncated: bool,
    pub elapsed_ms: u64,
    pub url: String,
    /// Each redirect followed: its status and the URL that answered with it.
    pub redirects: Vec<(u16, String)>,
    pub version: String,
    pub error: String,
    pub planned: bool,
}

impl HttpResponse {
    pub fn new(data: ResponseData) -> Self {
        Self(Arc::new(data))
    }

    pub fn data(&self) -> &ResponseData {
        &self.0
    }

    /// The value of `name` (any case); repeated headers joined with `, `.
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_lowercase();
        let values: Vec<&str> = self
            .0
            .headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    fn headers_map(&self) -> Map {
        let mut map = Map::new();
        for (name, _) in &self.0.headers {
            if !map.contains_key(name.as_str()) {
                let value = self.header(name).unwrap_or_default();
                map.insert(name.as_str().into(), value.into());
            }
        }
        map
    }

    fn summary(&self) -> String {
        let data = &self.0;
        if data.planned {
            return format!("HttpResponse(planned {} {})", data.method, data.url);
        }
        if !data.error.is_empty() {
            return format!(
                "HttpResponse({} {} failed: {})",
                data.method, data.url, data.error
            );
        }
        format!(
            "HttpResponse({} {} {} in {} ms)",
            data.status, data.method, data.url, data.elapsed_ms
        )
    }
}

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// Registers the type and its properties and methods.
pub fn register(family: &mut Family) {
    family
        .module
        .set_custom_type::<HttpResponse>("HttpResponse");
    getters(family);
    family.method(
        "header",
        None,
        &["response: &mut HttpResponse", "name: &str", "Dynamic"],
        &[
            "A response header by name, in any case; `()` when absent. Repeated headers are joined with `, `.",
            "",
            "```rhai",
            "let kind = http::get(url).header(\"Content-Type\") ?? \"\";",
            "```",
        ],
        |r: &mut HttpResponse, name: &str| r.header(name).map_or(Dynamic::UNIT, Dynamic::from),
    );
    family.method(
        "json",
        None,
        &["response: &mut HttpResponse", "Dynamic"],
        &[
            "The body parsed as JSON: objects become maps, arrays arrays.",
            "",
            "```rhai",
            "let health = http::get(`${base}/health`).json();",
            "check(\"Database reachable\", || health.database == \"ok\");",
            "```",
        ],
        |r: &mut HttpResponse| -> Outcome<Dynamic> {
            let data = r.data();
            serde_json::from_str::<serde_json::Value>(&data.text)
                .map(|v| from_json(&v))
                .map_err(|err| format!("the response from {} is not JSON: {err}", data.url).into())
        },
    );
    for name in ["to_string", "to_debug"] {
        family.method(
            name,
            None,
            &["response: &mut HttpResponse", "String"],
            &["A one-line summary: status, method, URL and time."],
            |r: &mut HttpResponse| r.summary(),
        );
    }
}

fn getters(family: &mut Family) {
    macro_rules! getter {
        ($name:literal, $ty:literal, $doc:literal, $f:expr) => {
            family.method(
                concat!("get$", $name),
                None,
                &["response: &mut HttpResponse", $ty],
                &[concat!("`response.", $name, "` (a property): ", $doc)],
                $f,
            );
        };
    }
    getter!(
        "status",
        "i64",
        "The status code (`0` when the request failed and `keep_errors` kept it).",
        |r: &mut HttpResponse| i64::from(r.data().status)
    );
    getter!(
        "ok",
        "bool",
        "Whether the status is 2xx.",
        |r: &mut HttpResponse| (200..300).contains(&r.data().status)
    );
    getter!(
        "headers",
        "Map",
        "All headers, by lower-case name.",
        |r: &mut HttpResponse| r.headers_map()
    );
    getter!(
        "text",
        "String",
        "The body as text (invalid UTF-8 replaced).",
        |r: &mut HttpResponse| r.data().text.clone()
    );
    getter!(
        "truncated",
        "bool",
        "Whether the body was longer than the limit and cut.",
        |r: &mut HttpResponse| r.data().truncated
    );
    getter!(
        "elapsed_ms",
        "i64",
        "Milliseconds from sending the request to the end of the body, redirects included.",
        |r: &mut HttpResponse| r.data().elapsed_ms as i64
    );
    getter!(
        "url",
        "String",
        "The URL that gave this response, after redirects (without credentials or query).",
        |r: &mut HttpResponse| r.data().url.clone()
    );
    getter!(
        "method",
        "String",
        "The request method.",
        |r: &mut HttpResponse| r.data().method.clone()
    );
    getter!(
        "version",
        "String",
        "The HTTP version: `HTTP/1.1`, `HTTP/2`.",
        |r: &mut HttpResponse| r.data().version.clone()
    );
    getter!(
        "error",
        "String",
        "Why the request failed, when `keep_errors` kept a failure; else empty.",
        |r: &mut HttpResponse| r.data().error.clone()
    );
    getter!(
        "planned",
        "bool",
        "Whether this is a planned response of a dry run (nothing was sent).",
        |r: &mut HttpResponse| r.data().planned
    );
    getter!(
        "redirects",
        "Array",
        "The redirects followed, in order: `#{status, url}` each.",
        |r: &mut HttpResponse| {
            r.data()
                .redirects
                .iter()
                .map(|(status, url)| {
                    let mut hop = Map::new();
                    hop.insert("status".into(), i64::from(*status).into());
                    hop.insert("url".into(), url.clone().into());
                    Dynamic::from(hop)
                })
                .collect::<Array>()
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_in_any_case_and_repeats_are_joined() {
        let response = HttpResponse::new(ResponseData {
            headers: vec![
                ("vary".into(), "origin".into()),
                ("set-cookie".into(), "a=1".into()),
                ("vary".into(), "accept".into()),
            ],
            ..ResponseData::default()
        });
        assert_eq!(response.header("Vary").as_deref(), Some("origin, accept"));
        assert_eq!(response.header("x-missing"), None);
        assert_eq!(response.headers_map().len(), 2);
    }
}
