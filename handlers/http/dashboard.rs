//! The dashboard `serve` shows: `static-web/` embedded in the binary when
//! it is built (`include_dir`), so `serve` works from any folder; or, for
//! development, a folder on disk (`DEV8_STATIC_DIR`) read on every request.
//! Unknown paths answer `index.html`, so client-side routes work.

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
        Some(dir) => Router::new()
            .fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => Router::new().fallback(axum::routing::get(embedded)),
    }
}

/// One embedded file by path (`index.html` for anything else).
async fn embedded(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let file = EMBEDDED
        .get_file(path)
        .filter(|_| !path.is_empty())
        .or_else(|| EMBEDDED.get_file("index.html"));
    let Some(file) = file else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mime = mime_guess::from_path(file.path()).first_or_octet_stream();
    let mut r = file.contents().into_response();
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
