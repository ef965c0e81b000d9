//! The web dashboard: `GET /` serves its page, `GET /assets/app.js` and `GET /assets/app.css` its
//! script and stylesheet. They are built from `query/dashboard/` by `query/dashboard/build.sh`
//! into `query/dashboard/dist/` (committed) and embedded here at compile time, so a deployment is
//! one binary and a cargo build needs no node.
//!
//! Caching: the page names its assets with a hash of their content (`?v=…`, written by
//! build.sh), so an asset asked for with the current hash is cached for a year and never
//! revalidated; the page itself and an asset asked for without that hash are revalidated every
//! time (`no-cache` with an `ETag`, answered 304 when unchanged). The dashboard routes with the
//! URL fragment (`#/drones/{id}`), so `/` is its only page.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;

const INDEX_HTML: &[u8] = include_bytes!("../../dashboard/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../../dashboard/dist/app.js");
const APP_CSS: &[u8] = include_bytes!("../../dashboard/dist/app.css");

/// The page loads only its own script and stylesheet and talks only to this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const REVALIDATE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// Quoted strong validator: a hash of the body.
    etag: String,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Self {
        Asset { body, content_type, etag: format!("\"{:016x}\"", fnv1a(body)) }
    }
}

static INDEX: LazyLock<Asset> = LazyLock::new(|| Asset::new(INDEX_HTML, "text/html; charset=utf-8"));
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_JS, "text/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_CSS, "text/css; charset=utf-8"));

/// The `?v=` value the page puts on its asset URLs (build.sh writes it into index.html).
static VERSION: LazyLock<Option<String>> = LazyLock::new(|| asset_version(INDEX_HTML));

/// The dashboard's routes; stateless, merged into the query router.
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/assets/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = serve(&INDEX, &headers, REVALIDATE);
    let extra = response.headers_mut();
    extra.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    extra.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    extra.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
    response
}

async fn asset(Path(file): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let asset: &Asset = match file.as_str() {
        "app.js" => &SCRIPT,
        "app.css" => &STYLE,
        _ => return ApiError::NotFound("asset").into_response(),
    };
    let versioned = VERSION.as_deref().is_some_and(|version| query_value(&uri, "v") == Some(version));
    serve(asset, &headers, if versioned { IMMUTABLE } else { REVALIDATE })
}

fn serve(asset: &Asset, request: &HeaderMap, cache_control: &'static str) -> Response {
    let etag = HeaderValue::from_str(&asset.etag).expect("a quoted hex string is a valid header value");
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache_control)),
        (header::ETAG, etag),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if etag_matches(request, &asset.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type))], headers, asset.body)
        .into_response()
}

/// `If-None-Match` lists our tag (or is `*`); weak comparison, as RFC 9110 asks for GET.
fn etag_matches(request: &HeaderMap, etag: &str) -> bool {
    request.get_all(header::IF_NONE_MATCH).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        value.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
    })
}

fn query_value<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The version in `src="/assets/app.js?v=…"`.
fn asset_version(index_html: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(index_html).ok()?;
    let start = text.find("/assets/app.js?v=")? + "/assets/app.js?v=".len();
    let version: String = text[start..].chars().take_while(char::is_ascii_alphanumeric).collect();
    (!version.is_empty()).then_some(version)
}

/// FNV-1a, 64 bits: a stable content hash for the ETag (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_both_assets_with_the_same_version() {
        let text = std::str::from_utf8(INDEX_HTML).expect("index.html is UTF-8");
        let version = VERSION.as_deref().expect("index.html names /assets/app.js?v=…");
        assert!(!version.contains("VERSION"), "dist/index.html still has the placeholder: run build.sh");
        assert!(text.contains(&format!("/assets/app.css?v={version}")), "app.css and app.js versions differ");
    }

    #[test]
    fn the_bundle_is_not_empty_and_is_minified() {
        assert!(APP_JS.len() > 10_000 && APP_CSS.len() > 1_000);
        assert!(APP_JS.iter().filter(|&&byte| byte == b'\n').count() < 50, "app.js does not look minified");
    }

    #[test]
    fn etag_matching_follows_if_none_match_lists() {
        let mut headers = HeaderMap::new();
        assert!(!etag_matches(&headers, "\"ab\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"ab\""));
        assert!(etag_matches(&headers, "\"ab\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!etag_matches(&headers, "\"ab\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(etag_matches(&headers, "\"ab\""));
    }

    #[tokio::test]
    async fn assets_have_their_content_type_and_cache_policy() {
        let version = VERSION.clone().expect("versioned index.html");
        let uri: Uri = format!("/assets/app.js?v={version}").parse().unwrap();
        let response = asset(Path("app.js".to_owned()), uri, HeaderMap::new()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(response.headers()[header::CACHE_CONTROL], IMMUTABLE);

        let unversioned =
            asset(Path("app.css".to_owned()), Uri::from_static("/assets/app.css"), HeaderMap::new()).await;
        assert_eq!(unversioned.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(unversioned.headers()[header::CACHE_CONTROL], REVALIDATE);

        let missing =
            asset(Path("secret.txt".to_owned()), Uri::from_static("/assets/secret.txt"), HeaderMap::new()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_page_revalidates_and_answers_304_when_unchanged() {
        let page = index(HeaderMap::new()).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(page.headers()[header::CACHE_CONTROL], REVALIDATE);
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, page.headers()[header::ETAG].clone());
        assert_eq!(index(conditional).await.status(), StatusCode::NOT_MODIFIED);
    }
}
