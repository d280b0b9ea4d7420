//! Accounts, sessions and tokens over the real HTTP API.

use crate::harness::{Auth, PASSWORD, TestApp, spawn_app};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use dev8::auth::KeySet;
use dev8::auth::sessions::REVOCATION_DELAY;
use dev8::auth::tokens::{Claims, TokenKind, claims};
use dev8::config::SignupPolicy;
use reqwest::Method;
use serde_json::json;

fn decode_claims(token: &str) -> Claims {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn health_templates_and_keys_are_public() {
    let app = spawn_app().await;
    let h = app.send(Method::GET, "/api/health", None, Auth::None).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "ok");
    assert!(h.body["version"].is_string());

    let t = app
        .send(Method::GET, "/api/templates", None, Auth::None)
        .await;
    let ids: Vec<_> = t.body["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node", "python", "golang"]);
    let presets = &t.body["presets"];
    assert_eq!(
        presets[0],
        json!({"id":"small","displayName":"Small","cpuCores":1,"memoryGB":2,"storageGB":20})
    );
    assert_eq!(presets[1]["cpuCores"], 2);
    assert_eq!(presets[2]["memoryGB"], 8);

    let k = app
        .send(Method::GET, "/api/auth/keys", None, Auth::None)
        .await;
    let key = &k.body["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(key.get("d").is_none(), "no private part in the JWKS");
}

#[tokio::test]
async fn sign_up_sets_a_safe_cookie_that_works_and_normalises_email() {
    let app = spawn_app().await;
    let a = app
        .sign_up("  Ada@Example.COM ", "correct-horse-battery")
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["user"]["email"], "ada@example.com");
    assert!(a.body["user"].get("passwordHash").is_none());
    let set_cookie = a.headers.get("set-cookie").unwrap().to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = a.cookie().unwrap();
    let me = app
        .send(
            Method::GET,
            "/api/auth/me",
            None,
            Auth::Cookie(&cookie, None),
        )
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["email"], "ada@example.com");

    // The same email in another spelling is taken.
    let again = app.sign_up("ADA@example.com", "another-password").await;
    assert_eq!(again.problem(409)["email"], "is already registered");
}

#[tokio::test]
async fn sign_up_validates_field_by_field() {
    let app = spawn_app().await;
    let a = app
        .send(
            Method::POST,
            "/api/auth/signup",
            Some(json!({"email":"nope","password":"short","role":"admin"})),
            Auth::Origin(app.origin()),
        )
        .await;
    let errs = a.problem(400);
    assert!(
        errs["email"].is_string() && errs["password"].is_string() && errs["role"].is_string(),
        "{errs}"
    );
    let long = "x".repeat(129);
    let b = app.sign_up("a@b.io", &long).await;
    assert!(b.problem(400)["password"].is_string());
}

#[tokio::test]
async fn sign_up_policy_first_closes_after_one_account() {
    let app = TestApp::builder()
        .settings(|s| s.signup = SignupPolicy::First)
        .spawn()
        .await;
    let cfg = app
        .send(Method::GET, "/api/auth/config", None, Auth::None)
        .await;
    assert_eq!(cfg.body["signupOpen"], true);
    assert_eq!(
        app.sign_up("first@x.io", "correct-horse-battery")
            .await
            .status,
        201
    );
    app.sign_up("second@x.io", "correct-horse-battery")
        .await
        .problem(403);
    let cfg = app
        .send(Method::GET, "/api/auth/config", None, Auth::None)
        .await;
    assert_eq!(cfg.body["signupOpen"], false);
}

/// With local compute every IDE runs as one OS user: even with sign-up
/// `open`, a second account is refused unless `DEV8_LOCAL_SHARED_USER`.
#[tokio::test]
async fn local_compute_takes_one_account_unless_shared() {
    let app = TestApp::builder()
        .settings(|s| {
            s.compute = dev8::config::ComputeKind::Local;
            s.local_shared_user = false;
        })
        .spawn()
        .await;
    assert_eq!(
        app.sign_up("first@x.io", "correct-horse-battery")
            .await
            .status,
        201
    );
    let second = app.sign_up("second@x.io", "correct-horse-battery").await;
    second.problem(403);
    let detail = second.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("DEV8_LOCAL_SHARED_USER"), "{detail}");
    let cfg = app
        .send(Method::GET, "/api/auth/config", None, Auth::None)
        .await;
    assert_eq!(cfg.body["signupOpen"], false);
    assert!(
        app.platform
            .store
            .user_by_email("second@x.io")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sign_up_policy_first_admits_one_of_many_racing() {
    let app = TestApp::builder()
        .settings(|s| s.signup = SignupPolicy::First)
        .spawn()
        .await;
    let attempts = (0..6).map(|i| {
        let app = &app;
        async move {
            app.sign_up(&format!("racer{i}@x.io"), "correct-horse-battery")
                .await
                .status
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 403),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn sign_up_policy_closed_and_domain_allowlist() {
    let closed = TestApp::builder()
        .settings(|s| s.signup = SignupPolicy::Closed)
        .spawn()
        .await;
    closed
        .sign_up("a@x.io", "correct-horse-battery")
        .await
        .problem(403);

    let app = TestApp::builder()
        .settings(|s| s.signup_domains = vec!["Example.com".into()])
        .spawn()
        .await;
    app.sign_up("a@other.io", "correct-horse-battery")
        .await
        .problem(403);
    // Typing an allowed address proves nothing: the account it gives can
    // do nothing until the mailed link is opened (see signup_confirm).
    let typed = app.sign_up("a@example.com", "correct-horse-battery").await;
    assert_eq!(typed.status, 201, "{}", typed.body);
    assert_eq!(typed.body["user"]["emailConfirmed"], json!(false));
    let stored = app.platform.store.user_by_email("a@example.com").await;
    assert!(!stored.unwrap().unwrap().is_confirmed());

    // The operator's first account, proven by the setup code, may use a
    // password even under an allowlist.
    let first = TestApp::builder()
        .settings(|s| {
            s.signup_domains = vec!["example.com".into()];
            s.setup_code = Some("s3tup-c0de".to_string().into());
        })
        .spawn()
        .await;
    let body = json!({"email": "op@example.com", "password": "correct-horse-battery",
                      "setupCode": "s3tup-c0de"});
    let op = first
        .send(
            Method::POST,
            "/api/auth/signup",
            Some(body),
            Auth::Origin(first.origin()),
        )
        .await;
    assert_eq!(op.status, 201, "{}", op.body);
    assert_eq!(op.body["user"]["emailConfirmed"], json!(true));
}

#[tokio::test]
async fn sign_in_gives_one_answer_for_unknown_email_and_wrong_password() {
    let app = spawn_app().await;
    app.user("ada@x.io").await;
    let signin = |email: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            app.send(
                Method::POST,
                "/api/auth/signin",
                Some(json!({"email": email, "password": pw})),
                Auth::Origin(app.origin()),
            )
            .await
        }
    };
    let wrong = signin("ada@x.io", "wrong-password-1").await;
    let unknown = signin("nobody@x.io", "wrong-password-1").await;
    wrong.problem(401);
    unknown.problem(401);
    assert_eq!(wrong.body, unknown.body);
    let ok = signin("ADA@x.io", "correct-horse-battery").await;
    assert_eq!(ok.status, 200);
    assert!(ok.cookie().is_some());
}

#[tokio::test]
async fn token_endpoint_gives_a_bearer_and_no_cookie() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let t = app
        .send(
            Method::POST,
            "/api/auth/token",
            Some(json!({"email":"ada@x.io","password":"correct-horse-battery"})),
            Auth::None,
        )
        .await;
    assert!(t.headers.get("set-cookie").is_none());
    assert!(t.body["expiresAt"].is_string());
    let c = decode_claims(t.body["token"].as_str().unwrap());
    assert_eq!(
        (c.typ.as_str(), c.aud.as_str(), c.sub.as_str()),
        ("session", "dev8-api", u.id.as_str())
    );
    assert!(c.exp - c.iat <= 12 * 3600);
    assert_eq!(app.get("/api/auth/me", &u).await.status, 200);
}

#[tokio::test]
async fn sign_out_revokes_the_session_server_side() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let other_session = app.user("bob@x.io").await;
    let out = app
        .send(
            Method::POST,
            "/api/auth/signout",
            None,
            Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(out.status, 204);
    app.get("/api/auth/me", &u).await.problem(401);
    assert_eq!(app.get("/api/auth/me", &other_session).await.status, 200);

    // A cookie session too: the cookie stops working even if a client keeps it.
    let a = app
        .send(
            Method::POST,
            "/api/auth/signin",
            Some(json!({"email":"bob@x.io","password":"correct-horse-battery"})),
            Auth::Origin(app.origin()),
        )
        .await;
    let cookie = a.cookie().unwrap();
    let out = app
        .send(
            Method::POST,
            "/api/auth/signout",
            None,
            Auth::Cookie(&cookie, Some(app.origin())),
        )
        .await;
    assert_eq!(out.status, 204);
    assert!(
        out.headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    app.send(
        Method::GET,
        "/api/auth/me",
        None,
        Auth::Cookie(&cookie, None),
    )
    .await
    .problem(401);
}

#[tokio::test]
async fn cookie_requests_need_our_origin_bearer_requests_do_not() {
    let app = spawn_app().await;
    let a = app.sign_up("ada@x.io", "correct-horse-battery").await;
    let cookie = a.cookie().unwrap();
    let body = json!({"name":"x","baseImage":"node","preset":"small"});
    let none = app
        .send(
            Method::POST,
            "/api/environments",
            Some(body.clone()),
            Auth::Cookie(&cookie, None),
        )
        .await;
    none.problem(403);
    let foreign = app
        .send(
            Method::POST,
            "/api/environments",
            Some(body.clone()),
            Auth::Cookie(&cookie, Some("https://evil.example")),
        )
        .await;
    foreign.problem(403);
    let list = app
        .send(
            Method::GET,
            "/api/environments",
            None,
            Auth::Cookie(&cookie, None),
        )
        .await;
    assert_eq!(
        list.body["environments"],
        json!([]),
        "nothing was created by refused requests"
    );
    let ok = app
        .send(
            Method::POST,
            "/api/environments",
            Some(body),
            Auth::Cookie(&cookie, Some(app.origin())),
        )
        .await;
    assert_eq!(ok.status, 202);

    // Sign-in and sign-up need it too.
    let signin = app
        .send(
            Method::POST,
            "/api/auth/signin",
            Some(json!({"email":"ada@x.io","password":"correct-horse-battery"})),
            Auth::Origin("https://evil.example"),
        )
        .await;
    signin.problem(403);
    let signup = app
        .send(
            Method::POST,
            "/api/auth/signup",
            Some(json!({"email":"b@x.io","password":"correct-horse-battery"})),
            Auth::None,
        )
        .await;
    signup.problem(403);
    // No credentialed CORS: nothing grants a foreign origin access.
    assert!(ok.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account_with_retry_after() {
    let app = spawn_app().await;
    app.user("ada@x.io").await;
    let mut last = None;
    for _ in 0..11 {
        last = Some(
            app.send(
                Method::POST,
                "/api/auth/token",
                Some(json!({"email":"ada@x.io","password":"wrong-password"})),
                Auth::None,
            )
            .await,
        );
    }
    let last = last.unwrap();
    last.problem(429);
    let retry: u64 = last
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60);
    // Even the right password waits now...
    let right = app
        .send(
            Method::POST,
            "/api/auth/token",
            Some(json!({"email":"ada@x.io","password":"correct-horse-battery"})),
            Auth::None,
        )
        .await;
    right.problem(429);
    // ...until the window passes.
    app.clock.advance(chrono::Duration::minutes(16));
    let later = app
        .send(
            Method::POST,
            "/api/auth/token",
            Some(json!({"email":"ada@x.io","password":"correct-horse-battery"})),
            Auth::None,
        )
        .await;
    assert_eq!(later.status, 200);
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_client_address() {
    let app = spawn_app().await;
    let mut statuses = Vec::new();
    for i in 0..51 {
        let a = app
            .send(
                Method::POST,
                "/api/auth/token",
                Some(json!({"email": format!("u{i}@x.io"), "password":"wrong-password"})),
                Auth::None,
            )
            .await;
        statuses.push(a.status.as_u16());
    }
    assert!(statuses[..50].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses[50], 429);
}

#[tokio::test]
async fn forwarded_addresses_count_only_with_trusted_hops() {
    let app = TestApp::builder()
        .settings(|s| s.trusted_proxy_hops = 1)
        .spawn()
        .await;
    // Each request claims another client address through one trusted proxy:
    // the per-address limit is per claimed client, so 51 distinct ones pass.
    for i in 0..51 {
        let a = app
            .client
            .post(format!("{}/api/auth/token", app.url))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"email": format!("u{i}@x.io"), "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 401);
    }
}

#[tokio::test]
async fn account_deletion_removes_environments_and_stops_tokens() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let e1 = app.create_env(&u, "one").await;
    app.create_env(&u, "two").await;
    app.settle(20).await;
    assert_eq!(
        app.status_of(&u, e1["id"].as_str().unwrap()).await,
        "running"
    );
    assert_eq!(app.fake().resource_count(), 2);

    let d = app
        .send(Method::DELETE, "/api/auth/me", None, Auth::Bearer(&u.token))
        .await;
    assert_eq!(d.status, 204);
    app.get("/api/auth/me", &u).await.problem(401);
    app.settle(20).await;
    assert_eq!(
        app.fake().resource_count(),
        0,
        "environments went through the delete job"
    );
    assert!(
        app.platform
            .store
            .environments(&u.id)
            .await
            .unwrap()
            .is_empty()
    );
    // The email can be used again.
    assert_eq!(
        app.sign_up("ada@x.io", "correct-horse-battery")
            .await
            .status,
        201
    );
}

/// A table of tokens that must all be refused with 401.
#[tokio::test]
async fn jwt_negative_table() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let good = decode_claims(&u.token);
    let keys = &app.platform.keys;
    let iss = app.platform.policy.issuer().to_string();
    let now = chrono::Utc::now().timestamp();
    let kid = keys.signing().kid.clone();

    let sign = |c: &Claims| keys.sign(c);
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = good.clone();
        f(&mut c);
        sign(&c)
    };
    let raw = |header: serde_json::Value, claims: &Claims, sig: &str| {
        format!(
            "{}.{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(claims).unwrap()),
            sig
        )
    };

    // HS256 signed with the public key bytes as the HMAC secret.
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some(kid.clone());
        let x = B64.decode(&keys.signing().x).unwrap();
        jsonwebtoken::encode(&h, &good, &jsonwebtoken::EncodingKey::from_secret(&x)).unwrap()
    };
    // The same kid, another key.
    let impostor = KeySet::parse(&format!("{kid}:{}", B64.encode([7u8; 32]))).unwrap();
    let ticket = {
        let mut c = claims(
            TokenKind::IdeTicket,
            &iss,
            &u.id,
            "e1",
            chrono::Utc::now(),
            chrono::Duration::seconds(60),
        );
        c.sid = good.sid.clone();
        sign(&c)
    };

    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            raw(json!({"alg":"none","typ":"JWT"}), &good, ""),
        ),
        (
            "alg none with kid",
            raw(json!({"alg":"none","kid":kid}), &good, ""),
        ),
        ("HS256 with the public key", hs256),
        ("wrong key, same kid", impostor.sign(&good)),
        ("wrong key, own kid", KeySet::generate().sign(&good)),
        ("expired", with(&|c| c.exp = now - 30)),
        ("not yet valid", with(&|c| c.nbf = now + 60)),
        ("issued in the future", with(&|c| c.iat = now + 600)),
        ("wrong audience", with(&|c| c.aud = "env:e1".into())),
        (
            "wrong issuer",
            with(&|c| c.iss = "https://evil.example".into()),
        ),
        ("wrong typ", with(&|c| c.typ = "agent".into())),
        ("no session id", with(&|c| c.sid = None)),
        ("unknown session id", with(&|c| c.sid = Some("nope".into()))),
        (
            "another user's subject",
            with(&|c| c.sub = "someone-else".into()),
        ),
        ("IDE ticket used as a session", ticket),
        ("tampered payload", {
            let mut parts: Vec<String> = u.token.split('.').map(str::to_string).collect();
            let mut c = good.clone();
            c.sub = "x".into();
            parts[1] = B64.encode(serde_json::to_vec(&c).unwrap());
            parts.join(".")
        }),
        ("unknown kid", {
            let parts: Vec<&str> = u.token.split('.').collect();
            format!(
                "{}.{}.{}",
                B64.encode(json!({"alg":"EdDSA","kid":"nope"}).to_string()),
                parts[1],
                parts[2]
            )
        }),
        ("garbage", "not.a.jwt".into()),
    ];
    for (name, token) in &cases {
        let a = app
            .send(Method::GET, "/api/auth/me", None, Auth::Bearer(token))
            .await;
        assert_eq!(a.status, 401, "{name} was accepted: {}", a.body);
    }
    // Sanity: the good token still works, and within 5 s leeway an almost-expired one does too.
    assert_eq!(app.get("/api/auth/me", &u).await.status, 200);
    let nearly = with(&|c| c.exp = now - 2);
    assert_eq!(
        app.send(Method::GET, "/api/auth/me", None, Auth::Bearer(&nearly))
            .await
            .status,
        200
    );
    // A deleted user's token stops working.
    assert_eq!(
        app.send(Method::DELETE, "/api/auth/me", None, Auth::Bearer(&u.token))
            .await
            .status,
        204
    );
    app.get("/api/auth/me", &u).await.problem(401);
}

/// The verified-session cache (`auth::sessions`) may believe a token for at
/// most `REVOCATION_DELAY`: a sign-out through another instance (here: the
/// shared store revoked directly, as that instance would) is refused once the
/// delay has passed.
#[tokio::test]
async fn a_session_revoked_elsewhere_stops_working_within_the_revocation_delay() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    assert_eq!(app.get("/api/environments", &u).await.status, 200);
    let sid = decode_claims(&u.token).sid.expect("a session id");
    app.platform.store.revoke_session(&sid).await.unwrap();
    app.clock.advance(REVOCATION_DELAY);
    app.get("/api/environments", &u).await.problem(401);
    app.get("/api/auth/me", &u).await.problem(401);
}

/// Deleting the account on this instance ends its sessions at once, cached
/// or not; a deletion through another instance within the revocation delay.
#[tokio::test]
async fn a_deleted_account_stops_working_at_once_here_and_within_the_delay_elsewhere() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    assert_eq!(app.get("/api/environments", &u).await.status, 200);
    let gone = app
        .send(Method::DELETE, "/api/auth/me", None, Auth::Bearer(&u.token))
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    app.get("/api/environments", &u).await.problem(401);
    app.get("/api/auth/me", &u).await.problem(401);

    let b = app.user("bob@x.io").await;
    assert_eq!(app.get("/api/environments", &b).await.status, 200);
    app.platform.store.delete_user(&b.id).await.unwrap();
    app.clock.advance(REVOCATION_DELAY);
    app.get("/api/environments", &b).await.problem(401);
}

/// With `DEV8_SETUP_CODE`, the first account's sign-up needs the code (the
/// dashboard is told to ask for it), and once an account exists nothing
/// changes for later sign-ups.
#[tokio::test]
async fn the_first_account_needs_the_setup_code() {
    let app = TestApp::builder()
        .settings(|s| s.setup_code = Some("s3tup-c0de".to_string().into()))
        .spawn()
        .await;
    let config = || app.send(Method::GET, "/api/auth/config", None, Auth::None);
    assert_eq!(config().await.body["setupCodeRequired"], true);
    let signup = |code: Option<&str>, email: &str| {
        let mut body = json!({"email": email, "password": "correct-horse-battery"});
        if let Some(c) = code {
            body["setupCode"] = json!(c);
        }
        app.send(
            Method::POST,
            "/api/auth/signup",
            Some(body),
            Auth::Origin(app.origin()),
        )
    };
    signup(None, "fast@x.io").await.problem(403);
    signup(Some("guess"), "fast@x.io").await.problem(403);
    assert_eq!(signup(Some("s3tup-c0de"), "op@x.io").await.status, 201);
    assert_eq!(config().await.body["setupCodeRequired"], false);
    // Sign-up is open in these tests: later accounts need no code.
    assert_eq!(signup(None, "later@x.io").await.status, 201);
}

#[tokio::test]
async fn sign_up_refuses_common_and_personal_passwords() {
    let app = spawn_app().await;
    for weak in ["password", "qwerty123", "ada.lovelace@x.io"] {
        let a = app.sign_up("ada.lovelace@x.io", weak).await;
        let message = a.problem(400)["password"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("is too easy to guess"),
            "{weak}: {message}"
        );
    }
    assert!(
        app.platform
            .store
            .user_by_email("ada.lovelace@x.io")
            .await
            .unwrap()
            .is_none(),
        "a refused sign-up creates nothing"
    );
    app.user("ada.lovelace@x.io").await;
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_signs_out_other_sessions() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let change = |body: serde_json::Value| {
        app.send(
            Method::POST,
            "/api/auth/password",
            Some(body),
            app.as_browser(&u),
        )
    };
    let new = "plum-violin-harbour-42";
    let wrong = change(json!({"currentPassword": "not-it-at-all", "newPassword": new})).await;
    assert_eq!(wrong.problem(400)["currentPassword"], "is wrong");
    let weak = change(json!({"currentPassword": PASSWORD, "newPassword": "password1"})).await;
    assert!(
        weak.problem(400)["newPassword"]
            .as_str()
            .unwrap()
            .starts_with("is too easy to guess")
    );
    let missing = change(json!({"newPassword": new})).await;
    assert!(missing.problem(400)["currentPassword"].is_string());
    // Nothing changed so far: the other session still works, the old password too.
    assert_eq!(app.get("/api/auth/me", &u).await.status, 200);
    let other = app.sign_in("ada@x.io").await;

    // A cookie request from another origin is refused before anything is read.
    let foreign = app
        .send(
            Method::POST,
            "/api/auth/password",
            Some(json!({"currentPassword": PASSWORD, "newPassword": new})),
            Auth::Cookie(&u.cookie, Some("https://evil.example")),
        )
        .await;
    assert!(foreign.status.is_client_error(), "{}", foreign.status);

    let ok = change(json!({"currentPassword": PASSWORD, "newPassword": new})).await;
    assert_eq!(ok.status, 204, "{}", ok.body);
    // This browser session stays; every other one (bearer tokens, the other
    // browser) is signed out at once.
    assert_eq!(
        app.send(Method::GET, "/api/auth/me", None, app.as_browser(&u))
            .await
            .status,
        200
    );
    app.get("/api/auth/me", &u).await.problem(401);
    app.send(Method::GET, "/api/auth/me", None, app.as_browser(&other))
        .await
        .problem(401);
    let signin = |password: &str| {
        app.send(
            Method::POST,
            "/api/auth/signin",
            Some(json!({"email": "ada@x.io", "password": password})),
            Auth::Origin(app.origin()),
        )
    };
    signin(PASSWORD).await.problem(401);
    assert_eq!(signin(new).await.status, 200);
    let audit = app
        .send(Method::GET, "/api/audit", None, app.as_browser(&u))
        .await;
    let actions: Vec<_> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "auth.password")
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["success", "failure"],
        "both attempts are in the log"
    );
}
