//! Extractors: the JSON object body, the authenticated caller (cookie or
//! bearer, with the CSRF Origin check for cookies), and the client address.

use super::error::ApiError;
use crate::auth::sessions::Verified;
use crate::auth::tokens::{SESSION_AUDIENCE, TokenKind};
use crate::domain::User;
use crate::platform::{Platform, Policy};
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum_extra::extract::CookieJar;
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub type AppState = Arc<Platform>;

pub const COOKIE_PLAIN: &str = "dev8_session";
pub const COOKIE_SECURE: &str = "__Host-dev8_session";

pub fn cookie_name(policy: &Policy) -> &'static str {
    if policy.secure_cookies() {
        COOKIE_SECURE
    } else {
        COOKIE_PLAIN
    }
}

/// A JSON object body. Wrong content type -> 415, malformed JSON -> 400,
/// too large -> 413, anything but an object -> 400; all problem+json.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<Value>::from_request(req, state).await {
            Ok(axum::Json(Value::Object(map))) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            )),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => {
            ApiError::BadRequest("the body is not valid JSON".into())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// Non-GET requests that rely on a cookie must come from our own origin.
pub fn require_same_origin(headers: &HeaderMap, policy: &Policy) -> Result<(), ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if o == policy.public_url.trim_end_matches('/') => Ok(()),
        Some(_) => Err(ApiError::Forbidden("cross-origin request refused".into())),
        None => Err(ApiError::Forbidden("the Origin header is required".into())),
    }
}

/// The signed-in caller, whose account has confirmed its email address
/// (an unconfirmed one gets `ApiError::Unconfirmed`, 403).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session_id: String,
    pub via_cookie: bool,
}

pub use crate::auth::tokens::DEV8_AUTHORIZATION;

/// Which header a bearer token came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHeader {
    /// `X-Dev8-Authorization`: only Dev8 clients send it; its token decides.
    Dev8,
    /// `Authorization`: may be a proxy's own value, so a token that is not
    /// Dev8's is treated as if the header were absent.
    Standard,
}

/// A request's bearer token. The one place that reads the auth headers.
#[derive(Debug, Clone, Copy)]
pub struct Bearer<'a> {
    pub token: &'a str,
    pub header: TokenHeader,
}

/// `X-Dev8-Authorization: Bearer <token>` if the header is there (a
/// malformed value gives an empty token, which no check accepts), else
/// `Authorization: Bearer <token>`, else none.
pub fn bearer(headers: &HeaderMap) -> Option<Bearer<'_>> {
    fn parse(v: &axum::http::HeaderValue) -> Option<&str> {
        let (scheme, token) = v.to_str().ok()?.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }
    if let Some(v) = headers.get(DEV8_AUTHORIZATION) {
        return Some(Bearer {
            token: parse(v).unwrap_or(""),
            header: TokenHeader::Dev8,
        });
    }
    let token = parse(headers.get(header::AUTHORIZATION)?)?;
    Some(Bearer {
        token,
        header: TokenHeader::Standard,
    })
}

/// Resolve a session token to its user: the JWT must verify as a session
/// token, and its server-side session must exist, be live and belong to an
/// existing user. A token confirmed less than `REVOCATION_DELAY` ago is
/// answered from `Platform::sessions` without a store read
/// (see `auth::sessions`).
pub async fn resolve_session(p: &Platform, token: &str) -> Result<(User, String), ApiError> {
    const REJECTED: ApiError = ApiError::Unauthorized("the session is not valid; sign in again");
    let now = p.clock.now();
    let seen = match p.sessions.get(token, now) {
        // An unconfirmed account past its time is gone, whatever its session.
        Ok(hit) if hit.0.unconfirmed_expired(now) => return Err(REJECTED),
        Ok(hit) => return Ok(hit),
        Err(generation) => generation,
    };
    let claims = p
        .keys
        .verify(
            token,
            TokenKind::Session,
            SESSION_AUDIENCE,
            p.policy.issuer(),
        )
        .map_err(|_| REJECTED)?;
    let sid = claims.sid.ok_or(REJECTED)?;
    let session = p.store.session(&sid).await?.ok_or(REJECTED)?;
    if session.revoked || session.expires_at <= p.clock.now() || session.user_id != claims.sub {
        return Err(REJECTED);
    }
    let user = p.store.user(&claims.sub).await?.ok_or(REJECTED)?;
    if user.unconfirmed_expired(now) {
        return Err(REJECTED);
    }
    let verified = Verified {
        token,
        user: &user,
        session_id: &sid,
        session_expires_at: session.expires_at,
        token_exp: claims.exp,
    };
    p.sessions.put(seen, verified, p.clock.now());
    Ok((user, sid))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, p: &AppState) -> Result<Self, Self::Rejection> {
        let caller = signed_in(parts, p).await?;
        if !caller.user.is_confirmed() {
            return Err(ApiError::Unconfirmed);
        }
        Ok(caller)
    }
}

/// Any signed-in caller, confirmed or not: only for what an unconfirmed
/// account needs (who am I, a new confirmation link, sign-out, deleting
/// the account).
#[derive(Debug, Clone)]
pub struct AnyCaller(pub Caller);

impl FromRequestParts<AppState> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, p: &AppState) -> Result<Self, Self::Rejection> {
        signed_in(parts, p).await.map(AnyCaller)
    }
}

async fn signed_in(parts: &Parts, p: &AppState) -> Result<Caller, ApiError> {
    let jar = CookieJar::from_headers(&parts.headers);
    let cookie = jar.get(cookie_name(&p.policy));
    if let Some(b) = bearer(&parts.headers) {
        match resolve_session(p, b.token).await {
            Ok((user, session_id)) => {
                return Ok(Caller {
                    user,
                    session_id,
                    via_cookie: false,
                });
            }
            // A proxy's own `Authorization` must not spoil the cookie:
            // carry on as if the header were not there.
            Err(_) if b.header == TokenHeader::Standard && cookie.is_some() => {}
            Err(e) => return Err(e),
        }
    }
    let Some(cookie) = cookie else {
        return Err(ApiError::Unauthorized("sign in first"));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        require_same_origin(&parts.headers, &p.policy)?;
    }
    let (user, session_id) = resolve_session(p, cookie.value()).await?;
    Ok(Caller {
        user,
        session_id,
        via_cookie: true,
    })
}

/// The client's address: the socket peer, or with `DEV8_TRUSTED_PROXY_HOPS`
/// = n, the n-th entry from the right of `X-Forwarded-For` (`None`, the
/// unknown address, when that entry does not parse).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, p: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        Ok(ClientAddr(
            forwarded_client(&parts.headers, p.policy.trusted_proxy_hops).unwrap_or(peer),
        ))
    }
}

/// The client `hops` trusted proxies saw: the `hops`-th entry from the right
/// of every `X-Forwarded-For` header taken together. Hops are counted over
/// the raw entries, so an entry that does not parse never shifts the index:
/// at the index it makes the address unknown (`Some(None)`). `None` when no
/// proxy is trusted or the header has fewer entries (the request did not
/// come through every proxy; the socket peer is the client then).
fn forwarded_client(headers: &HeaderMap, hops: usize) -> Option<Option<IpAddr>> {
    if hops == 0 {
        return None;
    }
    let mut entries = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        // A value that is not even text still holds entries: unknown ones.
        match value.to_str() {
            Ok(v) => entries.extend(v.split(',').map(|e| Some(e.trim()))),
            Err(_) => entries.push(None),
        }
    }
    let entry = *entries.get(entries.len().checked_sub(hops)?)?;
    Some(entry.and_then(parse_forwarded_entry))
}

/// One `X-Forwarded-For` entry: `ip`, `ip:port`, `[v6]` or `[v6]:port` (App
/// Service's front end writes the port). IPv4-mapped IPv6 is the IPv4 address.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

impl ClientAddr {
    pub fn key(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

/// The `{id}` of a path, well-formed (`validation::is_id`). Anything else is
/// 404 right here: put it first, and neither another extractor nor the
/// store sees the request.
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if crate::domain::validation::is_id(&id) => Ok(IdPath(id)),
            _ => Err(ApiError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_entries_parse_in_every_form() {
        for (entry, ip) in [
            ("203.0.113.9", "203.0.113.9"),
            ("203.0.113.9:4444", "203.0.113.9"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:4444", "2001:db8::1"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
        ] {
            assert_eq!(parse_forwarded_entry(entry), ip.parse().ok(), "{entry}");
        }
        for bad in ["", "unknown", "_hidden", "203.0.113.9:x", "[2001:db8::1"] {
            assert_eq!(parse_forwarded_entry(bad), None, "{bad}");
        }
    }

    #[test]
    fn hops_count_raw_entries() {
        let ip = |s: &str| Some(Some(s.parse().unwrap()));
        let h = xff(&["198.51.100.1, 203.0.113.9:4444"]);
        assert_eq!(forwarded_client(&h, 1), ip("203.0.113.9"));
        assert_eq!(forwarded_client(&h, 2), ip("198.51.100.1"));
        assert_eq!(forwarded_client(&h, 3), None);
        assert_eq!(forwarded_client(&h, 0), None);
        // An unparseable entry is unknown and does not shift the index.
        let h = xff(&["198.51.100.1, garbage"]);
        assert_eq!(forwarded_client(&h, 1), Some(None));
        let h = xff(&["198.51.100.1, garbage", "[2001:db8::1]:443"]);
        assert_eq!(forwarded_client(&h, 1), ip("2001:db8::1"));
        assert_eq!(forwarded_client(&h, 2), Some(None));
        assert_eq!(forwarded_client(&h, 3), ip("198.51.100.1"));
    }
}
