//! The dashboard `serve` shows: `static-web/` embedded in the binary when
//! it is built (`include_dir`), so `serve` works from any folder; or, for
//! development, a folder on disk (`DEV8_STATIC_DIR`) read on every request.
//! The dashboard's routes are in the hash (`/#/environments/<id>`); an
//! unknown path answers 404 with `index.html`, whose script shows its
//! not-found page.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use std::path::Path;
use tower_http::services::{ServeDir, ServeFile};

/// `static-web/` as it was when the binary was built.
static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/static-web");

/// The dashboard's router: from `dir` when given, else the embedded copy.
pub fn router(dir: Option<&Path>) -> Router {
    match dir {
        Some(dir) => Router::new().fallback_service(
            ServeDir::new(dir).not_found_service(ServeFile::new(dir.join("index.html"))),
        ),
        None => Router::new().fallback(axum::routing::get(embedded)),
    }
}

/// One embedded file by path; `/` is `index.html`, and so is anything
/// unknown, with 404.
async fn embedded(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let (status, file) = match EMBEDDED.get_file(path) {
        Some(file) => (StatusCode::OK, Some(file)),
        None => (StatusCode::NOT_FOUND, EMBEDDED.get_file("index.html")),
    };
    let Some(file) = file else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mime = mime_guess::from_path(file.path()).first_or_octet_stream();
    let mut r = (status, file.contents()).into_response();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_is_embedded_with_its_modules() {
        assert!(EMBEDDED.get_file("index.html").is_some());
        let js = EMBEDDED.get_dir("js").expect("static-web/js embedded");
        assert!(
            js.files()
                .any(|f| f.path().extension().is_some_and(|e| e == "js")),
            "no ES modules embedded"
        );
    }
}
