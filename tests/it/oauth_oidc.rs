//! Sign-in with OpenID Connect. The flow runs against a real provider (npm
//! `oidc-provider`, started on loopback by `RealProvider`; full tier),
//! browserless: redirects are followed and the login and consent forms
//! posted. ID-token checks run against `TestIdp`, whose keys and tokens the
//! test owns (fast tier).

use crate::fakes::idp::{self, TestIdp, TestKey};
use crate::harness::browser::{Browser, Page, query_param, resolve};
use crate::harness::{Auth, TestApp};
use crate::peers::oidc_provider::RealProvider;
use dev8::http::oauth_routes::flow_key;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

const EMAIL: &str = "ada@lovelace.example";

async fn with_real_provider() -> (TestApp, RealProvider) {
    let mut op = RealProvider::start().await;
    let issuer = op.issuer.clone();
    let app = TestApp::builder()
        .settings(move |s| {
            s.oauth.oidc_issuer = Some(issuer);
            s.oauth.oidc_client_id = Some(idp::CLIENT_ID.into());
            s.oauth.oidc_client_secret = Some(SecretString::from(idp::CLIENT_SECRET));
            s.oauth.oidc_name = "Test SSO".into();
        })
        .spawn()
        .await;
    op.register(&format!("{}/api/auth/oidc/callback", app.url), EMAIL)
        .await;
    (app, op)
}

fn form_action(page: &Page) -> String {
    let html = &page.text;
    let at = html.find("action=\"").expect("a form") + 8;
    let end = html[at..].find('"').unwrap();
    resolve(&page.url, &html[at..at + end])
}

/// From the provider's authorization URL: log in and consent, then stop at
/// the redirect back to Dev8 and return it (not requested yet).
async fn authorize_at_provider(b: &mut Browser, app: &TestApp, authorize_url: &str) -> String {
    let page = b.get(authorize_url).await;
    let (login, back) = b.follow_until(page, &app.url).await;
    assert!(back.is_none(), "a login form first");
    assert!(login.text.contains("name=\"login\""), "{}", login.text);
    let submitted = b
        .post_form(
            &form_action(&login),
            &[
                ("prompt", "login"),
                ("login", "ada"),
                ("password", "anything"),
            ],
        )
        .await;
    let (consent, back) = b.follow_until(submitted, &app.url).await;
    if let Some(back) = back {
        return back;
    }
    assert!(
        consent.text.contains("value=\"consent\""),
        "{}",
        consent.text
    );
    let submitted = b
        .post_form(&form_action(&consent), &[("prompt", "consent")])
        .await;
    let (_, back) = b.follow_until(submitted, &app.url).await;
    back.expect("redirected back to Dev8")
}

async fn start(b: &mut Browser, app: &TestApp) -> Page {
    let s = b.get(&format!("{}/api/auth/oidc/start", app.url)).await;
    assert_eq!(s.status, 303, "{}", s.text);
    s
}

fn session(p: &Page) -> Option<String> {
    p.set_cookie("dev8_session")
        .filter(|v| !v.is_empty())
        .map(|v| format!("dev8_session={v}"))
}

fn dashboard_error(app: &TestApp, p: &Page) -> String {
    let loc = p.location.clone().unwrap_or_default();
    let prefix = format!("{}/#/signin?error=", app.url);
    assert!(loc.starts_with(&prefix), "{} {loc}", p.status);
    assert!(session(p).is_none());
    loc[prefix.len()..].to_string()
}

#[tokio::test]
#[ignore = "full tier: needs npm oidc-provider on Node.js"]
async fn sign_in_with_a_real_openid_provider() {
    let (app, _op) = with_real_provider().await;
    let config = app
        .send(Method::GET, "/api/auth/config", None, Auth::None)
        .await;
    assert_eq!(
        config.body["providers"],
        json!([{"id": "oidc", "name": "Test SSO"}])
    );

    let mut b = Browser::new();
    let s = start(&mut b, &app).await;
    let authorize = s.location.clone().unwrap();
    for p in ["state", "nonce", "code_challenge"] {
        assert!(query_param(&authorize, p).is_some(), "{p} in {authorize}");
    }
    assert_eq!(
        query_param(&authorize, "response_mode").as_deref(),
        Some("query")
    );
    assert_eq!(
        query_param(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let back = authorize_at_provider(&mut b, &app, &authorize).await;
    let done = b.get(&back).await;
    assert_eq!(
        done.location.as_deref(),
        Some(format!("{}/#/", app.url).as_str()),
        "{}",
        done.text
    );
    let cookie = session(&done).expect("signed in");
    let me = app
        .send(
            Method::GET,
            "/api/auth/me",
            None,
            Auth::Cookie(&cookie, None),
        )
        .await;
    assert_eq!(me.body["user"]["email"], EMAIL);
    assert_eq!(me.body["user"]["name"], "Ada Lovelace");
    let ids = app
        .send(
            Method::GET,
            "/api/auth/identities",
            None,
            Auth::Cookie(&cookie, None),
        )
        .await;
    assert_eq!(ids.body["identities"][0]["provider"], "oidc");
    assert_eq!(ids.body["identities"][0]["emailVerified"], true);
}

#[tokio::test]
#[ignore = "full tier: needs npm oidc-provider on Node.js"]
async fn a_tampered_state_is_refused_before_any_exchange() {
    let (app, _op) = with_real_provider().await;
    let mut b = Browser::new();
    let s = start(&mut b, &app).await;
    let back = authorize_at_provider(&mut b, &app, &s.location.unwrap()).await;
    let state = query_param(&back, "state").unwrap();
    let tampered = back.replace(&format!("state={state}"), "state=x");
    let r = b.get(&tampered).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(session(&r).is_none());
    assert!(
        app.platform
            .store
            .user_by_email(EMAIL)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
#[ignore = "full tier: needs npm oidc-provider on Node.js"]
async fn a_replayed_code_is_refused_by_the_provider_and_gives_no_session() {
    let (app, _op) = with_real_provider().await;
    let mut b = Browser::new();
    let s = start(&mut b, &app).await;
    let handle = b.cookie(&app.url, "dev8_oauth").unwrap();
    let key = flow_key(&handle);
    let flow = app.platform.store.document(&key).await.unwrap().unwrap();
    let back = authorize_at_provider(&mut b, &app, &s.location.unwrap()).await;
    assert!(session(&b.get(&back).await).is_some());

    // The same callback again: the flow is used up.
    b.set_cookie(&app.url, "dev8_oauth", &handle);
    assert_eq!(b.get(&back).await.status, 400);

    // Even with the flow restored (so Dev8 exchanges the code again with
    // the right verifier), the provider refuses the second use.
    let now = app.platform.store.document(&key).await.unwrap().unwrap();
    app.platform
        .store
        .put_document(&key, &flow.value, Some(&now.etag), None)
        .await
        .unwrap();
    let replay = b.get(&back).await;
    assert_eq!(dashboard_error(&app, &replay), "provider_rejected");
}

#[tokio::test]
#[ignore = "full tier: needs npm oidc-provider on Node.js"]
async fn a_code_redeemed_with_another_flows_verifier_is_refused() {
    let (app, _op) = with_real_provider().await;
    // Flow A gets the code; flow B (another browser) tries to use it with
    // its own state and PKCE verifier.
    let mut a = Browser::new();
    let sa = start(&mut a, &app).await;
    let back_a = authorize_at_provider(&mut a, &app, &sa.location.unwrap()).await;
    let code = query_param(&back_a, "code").unwrap();
    let mut b = Browser::new();
    let sb = start(&mut b, &app).await;
    let state_b = query_param(&sb.location.unwrap(), "state").unwrap();
    let r = b
        .get(&format!(
            "{}/api/auth/oidc/callback?code={code}&state={state_b}",
            app.url
        ))
        .await;
    assert_eq!(dashboard_error(&app, &r), "provider_rejected");
    assert!(
        app.platform
            .store
            .user_by_email(EMAIL)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
#[ignore = "full tier: needs npm oidc-provider on Node.js"]
async fn declining_at_the_provider_ends_on_the_dashboard() {
    let (app, _op) = with_real_provider().await;
    let mut b = Browser::new();
    let s = start(&mut b, &app).await;
    let page = b.get(&s.location.unwrap()).await;
    let (login, _) = b.follow_until(page, &app.url).await;
    let abort = format!("{}/abort", login.url.trim_end_matches('/'));
    let aborted = b.get(&abort).await;
    let (_, back) = b.follow_until(aborted, &app.url).await;
    let back = back.expect("redirected back to Dev8");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    let r = b.get(&back).await;
    assert_eq!(dashboard_error(&app, &r), "access_denied");
    assert!(
        app.platform
            .store
            .user_by_email(EMAIL)
            .await
            .unwrap()
            .is_none()
    );
}

// --- ID-token validation against a JWKS the test owns ---------------------

async fn with_test_idp() -> (TestApp, TestIdp, TestKey) {
    let idp = TestIdp::start().await;
    let key = TestKey::generate("k1");
    idp.publish(&key);
    let issuer = idp.issuer.clone();
    let app = TestApp::builder()
        .settings(move |s| {
            s.oauth.oidc_issuer = Some(issuer);
            s.oauth.oidc_client_id = Some(idp::CLIENT_ID.into());
            s.oauth.oidc_client_secret = Some(SecretString::from(idp::CLIENT_SECRET));
        })
        .spawn()
        .await;
    (app, idp, key)
}

fn claims(idp: &TestIdp, nonce: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": idp.issuer, "aud": idp::CLIENT_ID, "sub": "subject-1", "iat": now, "exp": now + 300,
           "nonce": nonce, "email": "grace@hopper.example", "email_verified": true, "name": "Grace"})
}

/// Start a sign-in, let the token endpoint answer `token(nonce)`, and
/// return the callback's answer.
async fn attempt(app: &TestApp, idp: &TestIdp, token: impl FnOnce(&str) -> String) -> Page {
    let mut b = Browser::new();
    let s = start(&mut b, app).await;
    let to = s.location.unwrap();
    assert!(to.starts_with(&format!("{}/authorize?", idp.issuer)));
    let nonce = query_param(&to, "nonce").unwrap();
    let state = query_param(&to, "state").unwrap();
    idp.answer_next(token(&nonce));
    b.get(&format!(
        "{}/api/auth/oidc/callback?code=any&state={state}",
        app.url
    ))
    .await
}

#[tokio::test]
async fn a_valid_id_token_signs_in_and_the_exchange_carries_the_verifier() {
    let (app, idp, key) = with_test_idp().await;
    let r = attempt(&app, &idp, |n| key.sign(&claims(&idp, n))).await;
    assert!(session(&r).is_some(), "{:?}", r.location);
    let form = &idp.token_forms()[0];
    assert_eq!(form["code_verifier"].len(), 43);
    assert!(
        !form.contains_key("client_secret"),
        "the secret goes in Basic auth"
    );
}

#[tokio::test]
async fn id_tokens_failing_a_check_are_refused() {
    let (app, idp, key) = with_test_idp().await;
    let stranger = TestKey::generate("k1");
    let now = chrono::Utc::now().timestamp();
    type Case = (&'static str, Box<dyn Fn(&mut Value)>);
    let cases: Vec<Case> = vec![
        (
            "wrong audience",
            Box::new(|c| c["aud"] = json!("someone-else")),
        ),
        (
            "expired",
            Box::new(move |c| {
                c["exp"] = json!(now - 30);
                c["iat"] = json!(now - 600);
            }),
        ),
        (
            "wrong nonce",
            Box::new(|c| c["nonce"] = json!("not-the-nonce")),
        ),
        (
            "wrong issuer",
            Box::new(|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "issued in the future",
            Box::new(move |c| c["iat"] = json!(now + 120)),
        ),
        (
            "no nonce",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
        ),
    ];
    for (what, change) in cases {
        let r = attempt(&app, &idp, |n| {
            let mut c = claims(&idp, n);
            change(&mut c);
            key.sign(&c)
        })
        .await;
        assert_eq!(dashboard_error(&app, &r), "invalid_token", "{what}");
    }
    // A bad signature: another key claiming the published kid.
    let r = attempt(&app, &idp, |n| stranger.sign(&claims(&idp, n))).await;
    assert_eq!(dashboard_error(&app, &r), "invalid_token", "bad signature");
    // An unsigned token.
    let r = attempt(&app, &idp, |n| {
        let enc = |v: &Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            enc(&json!({"alg": "none"})),
            enc(&claims(&idp, n))
        )
    })
    .await;
    assert_eq!(dashboard_error(&app, &r), "invalid_token", "alg none");
    assert!(
        app.platform
            .store
            .user_by_email("grace@hopper.example")
            .await
            .unwrap()
            .is_none()
    );
}

/// A provider that follows §5.4 strictly puts `email` and `name` only in
/// the UserInfo response: Dev8 reads them there, for the ID token's `sub`
/// only, and asks UserInfo nothing when the ID token has them.
#[tokio::test]
async fn claims_left_out_of_the_id_token_are_read_from_userinfo() {
    let (app, idp, key) = with_test_idp().await;
    let bare = |n: &str| {
        let mut c = claims(&idp, n);
        for k in ["email", "email_verified", "name"] {
            c.as_object_mut().unwrap().remove(k);
        }
        key.sign(&c)
    };
    // UserInfo speaking for someone else is not used.
    idp.answer_userinfo(json!({"sub": "subject-2", "email": "grace@hopper.example",
                               "email_verified": true, "name": "Grace"}));
    let r = attempt(&app, &idp, bare).await;
    assert_eq!(dashboard_error(&app, &r), "invalid_token");
    assert_eq!(idp.userinfo_calls(), 1);

    idp.answer_userinfo(json!({"sub": "subject-1", "email": "Grace@Hopper.example",
                               "email_verified": true, "name": "Grace"}));
    let r = attempt(&app, &idp, bare).await;
    assert!(session(&r).is_some(), "{:?}", r.location);
    let user = app
        .platform
        .store
        .user_by_email("grace@hopper.example")
        .await
        .unwrap()
        .expect("the account from UserInfo's claims");
    assert_eq!(user.name, "Grace");
    assert_eq!(idp.userinfo_calls(), 2);

    // An ID token with the claims needs no UserInfo call.
    let r = attempt(&app, &idp, |n| key.sign(&claims(&idp, n))).await;
    assert!(session(&r).is_some(), "{:?}", r.location);
    assert_eq!(idp.userinfo_calls(), 2);
}

#[tokio::test]
async fn the_jwks_is_cached_and_fetched_again_for_an_unknown_kid() {
    let (app, idp, key) = with_test_idp().await;
    assert!(session(&attempt(&app, &idp, |n| key.sign(&claims(&idp, n))).await).is_some());
    assert!(session(&attempt(&app, &idp, |n| key.sign(&claims(&idp, n))).await).is_some());
    assert_eq!(idp.jwks_fetches(), 1, "cached");
    // The provider rotates: a new key appears.
    let rotated = TestKey::generate("k2");
    idp.publish(&rotated);
    let r = attempt(&app, &idp, |n| rotated.sign(&claims(&idp, n))).await;
    assert!(session(&r).is_some(), "{:?}", r.location);
    assert_eq!(idp.jwks_fetches(), 2);
    // A kid that is nowhere: refused after one more look.
    let unknown = TestKey::generate("k3");
    let r = attempt(&app, &idp, |n| unknown.sign(&claims(&idp, n))).await;
    assert_eq!(dashboard_error(&app, &r), "invalid_token");
}

#[tokio::test]
async fn an_unreachable_issuer_ends_on_the_dashboard() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = TestApp::builder()
        .settings(move |s| {
            s.oauth.oidc_issuer = Some(format!("http://127.0.0.1:{closed}"));
            s.oauth.oidc_client_id = Some(idp::CLIENT_ID.into());
        })
        .spawn()
        .await;
    let r = Browser::new()
        .get(&format!("{}/api/auth/oidc/start", app.url))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(dashboard_error(&app, &r), "provider_unavailable");
}

#[tokio::test]
async fn es256_keys_from_the_jwks_verify_too() {
    let (app, idp, _) = with_test_idp().await;
    let ec = TestKey::generate_es256("ec1");
    idp.publish(&ec);
    let r = attempt(&app, &idp, |n| ec.sign(&claims(&idp, n))).await;
    assert!(session(&r).is_some(), "{:?}", r.location);
    // The EC key's kid on an EdDSA token: the algorithm does not fit the key.
    let ed = TestKey::generate("x");
    let r = attempt(&app, &idp, |n| ed.sign_as("ec1", &claims(&idp, n))).await;
    assert_eq!(dashboard_error(&app, &r), "invalid_token");
}
