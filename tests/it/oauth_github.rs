//! Sign-in with GitHub against a stateful stand-in of GitHub's documented
//! OAuth and REST endpoints (`fakes::github`): account creation,
//! the linking rules (verified emails only, no takeover of password
//! accounts), explicit linking and unlinking, denied consent, and the
//! state checks.

use crate::fakes::github::{self, GitHubStandIn};
use crate::harness::browser::{Browser, Page, query_param};
use crate::harness::{Auth, TestApp, spawn_app};
use dev8::config::SignupPolicy;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

async fn setup_with(policy: SignupPolicy) -> (TestApp, GitHubStandIn) {
    setup_where(move |s| s.signup = policy).await
}

/// An app with the GitHub stand-in configured, and `more` settings.
async fn setup_where(
    more: impl FnOnce(&mut dev8::config::Settings) + 'static,
) -> (TestApp, GitHubStandIn) {
    let gh = GitHubStandIn::start().await;
    let (url, api) = (gh.url.clone(), gh.api_url());
    let app = TestApp::builder()
        .settings(move |s| {
            more(s);
            s.oauth.github_client_id = Some(github::CLIENT_ID.into());
            s.oauth.github_client_secret = Some(SecretString::from(github::CLIENT_SECRET));
            s.oauth.github_url = url;
            s.oauth.github_api_url = api;
        })
        .spawn()
        .await;
    (app, gh)
}

async fn setup() -> (TestApp, GitHubStandIn) {
    setup_with(SignupPolicy::Open).await
}

/// Start at Dev8, pass through the stand-in, and land on the callback.
/// Returns the callback's answer.
async fn sign_in(app: &TestApp, b: &mut Browser) -> Page {
    let start = b.get(&format!("{}/api/auth/github/start", app.url)).await;
    assert_eq!(start.status, 303, "{}", start.text);
    let (_, callback) = b.follow_until(start, &app.url).await;
    b.get(&callback.expect("back at Dev8")).await
}

fn session(p: &Page) -> Option<String> {
    p.set_cookie("dev8_session")
        .filter(|v| !v.is_empty())
        .map(|v| format!("dev8_session={v}"))
}

async fn me(app: &TestApp, cookie: &str) -> Value {
    let a = app
        .send(
            Method::GET,
            "/api/auth/me",
            None,
            Auth::Cookie(cookie, None),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["user"].clone()
}

async fn identities(app: &TestApp, cookie: &str) -> Value {
    app.send(
        Method::GET,
        "/api/auth/identities",
        None,
        Auth::Cookie(cookie, None),
    )
    .await
    .body
}

async fn user_count(app: &TestApp, emails: &[&str]) -> usize {
    let mut n = 0;
    for e in emails {
        if app.platform.store.user_by_email(e).await.unwrap().is_some() {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn providers_are_listed_only_when_configured() {
    let plain = spawn_app().await;
    let c = plain
        .send(Method::GET, "/api/auth/config", None, Auth::None)
        .await;
    assert_eq!(c.body["providers"], json!([]));
    let s = plain
        .send(Method::GET, "/api/auth/github/start", None, Auth::None)
        .await;
    assert_eq!(s.status, 404);

    let (app, _gh) = setup().await;
    let c = app
        .send(Method::GET, "/api/auth/config", None, Auth::None)
        .await;
    assert_eq!(
        c.body["providers"],
        json!([{"id": "github", "name": "GitHub"}])
    );
}

#[tokio::test]
async fn start_redirects_with_state_pkce_and_a_short_lived_cookie() {
    let (app, _gh) = setup().await;
    let mut b = Browser::new();
    let start = b.get(&format!("{}/api/auth/github/start", app.url)).await;
    assert_eq!(start.status, 303);
    let to = start.location.clone().unwrap();
    assert!(to.starts_with(&format!("{}/login/oauth/authorize?", _gh.url)));
    assert_eq!(
        query_param(&to, "client_id").as_deref(),
        Some(github::CLIENT_ID)
    );
    assert_eq!(
        query_param(&to, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&to, "code_challenge").unwrap().len(), 43);
    assert!(query_param(&to, "state").unwrap().len() >= 32);
    assert_eq!(
        query_param(&to, "redirect_uri").unwrap(),
        format!("{}/api/auth/github/callback", app.url)
    );
    assert!(query_param(&to, "code_verifier").is_none());
    let cookie = start
        .set_cookies
        .iter()
        .find(|c| c.starts_with("dev8_oauth="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // The cookie is an opaque handle: neither the state nor anything the
    // provider sees.
    let handle = start.set_cookie("dev8_oauth").unwrap();
    assert!(!to.contains(&handle));
}

#[tokio::test]
async fn a_verified_github_account_signs_up_then_signs_in_to_the_same_account() {
    let (app, gh) = setup().await;
    gh.add_user(101, "ada", &[("Ada@Example.com", true, true)]);
    gh.sign_in_as("ada");
    let mut b = Browser::new();
    let done = sign_in(&app, &mut b).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(
        done.location.as_deref(),
        Some(format!("{}/#/", app.url).as_str())
    );
    let cookie = session(&done).expect("a session cookie");
    let user = me(&app, &cookie).await;
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "ada");
    let ids = identities(&app, &cookie).await;
    assert_eq!(ids["hasPassword"], false);
    assert_eq!(ids["identities"][0]["provider"], "github");
    assert_eq!(ids["identities"][0]["emailVerified"], true);
    // The flow cookie is cleared and the token request carried the secret
    // and the PKCE verifier.
    assert_eq!(done.set_cookie("dev8_oauth").as_deref(), Some(""));
    let reqs = gh.token_requests();
    assert_eq!(reqs[0]["client_secret"], github::CLIENT_SECRET);
    assert_eq!(reqs[0]["code_verifier"].len(), 43);

    let audit = app
        .send(Method::GET, "/api/audit", None, Auth::Cookie(&cookie, None))
        .await;
    let actions: Vec<(&str, &str, &str)> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("auth.signin", "success", "github"),
            ("auth.signup", "success", "github")
        ]
    );
    assert!(
        !audit.body.to_string().contains("gho_"),
        "no tokens in records"
    );

    let again = sign_in(&app, &mut Browser::new()).await;
    let cookie2 = session(&again).unwrap();
    assert_eq!(me(&app, &cookie2).await["id"], user["id"]);
    assert_eq!(
        identities(&app, &cookie2).await["identities"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn emails_link_automatically_only_when_both_sides_are_verified() {
    let (app, gh) = setup().await;
    gh.add_user(1, "first", &[("x@corp.io", true, true)]);
    gh.add_user(2, "unverified-same", &[("x@corp.io", false, true)]);
    gh.add_user(3, "unverified-new", &[("y@corp.io", false, true)]);
    gh.add_user(
        4,
        "verified-same",
        &[("other@corp.io", false, true), ("x@corp.io", true, false)],
    );

    gh.sign_in_as("first");
    let a = sign_in(&app, &mut Browser::new()).await;
    let owner = me(&app, &session(&a).unwrap()).await["id"].clone();

    // An unverified claim to a taken email: no link, no takeover.
    gh.sign_in_as("unverified-same");
    let r = sign_in(&app, &mut Browser::new()).await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{}/#/signin?error=account_exists", app.url).as_str())
    );
    assert!(session(&r).is_none());

    // An unverified email nobody uses: a new, separate account.
    gh.sign_in_as("unverified-new");
    let r = sign_in(&app, &mut Browser::new()).await;
    let c = session(&r).unwrap();
    let u = me(&app, &c).await;
    assert_ne!(u["id"], owner);
    assert_eq!(u["email"], "y@corp.io");
    assert_eq!(
        identities(&app, &c).await["identities"][0]["emailVerified"],
        false
    );

    // Verified on both sides: linked to the existing account.
    gh.sign_in_as("verified-same");
    let r = sign_in(&app, &mut Browser::new()).await;
    let c = session(&r).unwrap();
    assert_eq!(me(&app, &c).await["id"], owner);
    assert_eq!(
        identities(&app, &c).await["identities"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_password_account_is_never_taken_over_but_can_link_explicitly() {
    let (app, gh) = setup().await;
    let signup = app.sign_up("ada@x.io", "correct-horse-battery").await;
    let pw_cookie = signup.cookie().unwrap();
    let pw_id = signup.body["user"]["id"].clone();
    gh.add_user(7, "ada", &[("ada@x.io", true, true)]);
    gh.sign_in_as("ada");

    let r = sign_in(&app, &mut Browser::new()).await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{}/#/signin?error=account_exists", app.url).as_str())
    );
    assert!(session(&r).is_none());
    assert!(
        identities(&app, &pw_cookie).await["identities"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Linking from the signed-in account (the dashboard's fetch, then a navigation).
    let mut b = Browser::new();
    let (name, value) = pw_cookie.split_once('=').unwrap();
    b.set_cookie(&app.url, name, value);
    let no_origin = app
        .send(
            Method::POST,
            "/api/auth/github/link",
            None,
            Auth::Cookie(&pw_cookie, None),
        )
        .await;
    no_origin.problem(403);
    // A link declined at the provider, then one granted: both end on the
    // dashboard's account page, which explains the outcome.
    gh.deny_next();
    let mut ends = Vec::new();
    for _ in 0..2 {
        let started = b
            .post_json(
                &format!("{}/api/auth/github/link", app.url),
                &app.url,
                json!({}),
            )
            .await;
        assert_eq!(started.status, 200, "{}", started.text);
        let url = serde_json::from_str::<Value>(&started.text).unwrap()["redirect"]
            .as_str()
            .unwrap()
            .to_string();
        let at_github = b.get(&url).await;
        let (_, cb) = b.follow_until(at_github, &app.url).await;
        ends.push(b.get(&cb.unwrap()).await.location);
        gh.sign_in_as("ada"); // the person tries again and grants it
    }
    assert_eq!(
        ends,
        [
            Some(format!("{}/#/account?error=access_denied", app.url)),
            Some(format!("{}/#/account?linked=github", app.url)),
        ]
    );
    let ids = identities(&app, &pw_cookie).await;
    assert_eq!(ids["identities"].as_array().unwrap().len(), 1);
    assert_eq!(ids["hasPassword"], true);

    // Now GitHub signs in to the password account.
    let r = sign_in(&app, &mut Browser::new()).await;
    let c = session(&r).unwrap();
    assert_eq!(me(&app, &c).await["id"], pw_id);

    // Unlink (the password remains a way in).
    let iid = ids["identities"][0]["id"].as_str().unwrap();
    let del = app
        .send(
            Method::DELETE,
            &format!("/api/auth/identities/{iid}"),
            None,
            Auth::Cookie(&pw_cookie, Some(app.origin())),
        )
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    assert!(
        identities(&app, &pw_cookie).await["identities"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let records = app
        .send(
            Method::GET,
            "/api/audit",
            None,
            Auth::Cookie(&pw_cookie, None),
        )
        .await
        .body["records"]
        .clone();
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    let links: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "identity.link")
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(links[0]["outcome"], "success");
    assert_eq!(links[1]["outcome"], "failure", "the declined one");
    assert_eq!(
        actions.iter().filter(|a| **a == "identity.unlink").count(),
        1
    );
}

#[tokio::test]
async fn the_last_sign_in_method_cannot_be_unlinked() {
    let (app, gh) = setup().await;
    gh.add_user(5, "solo", &[("solo@x.io", true, true)]);
    gh.sign_in_as("solo");
    let r = sign_in(&app, &mut Browser::new()).await;
    let c = session(&r).unwrap();
    let id = identities(&app, &c).await["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let del = app
        .send(
            Method::DELETE,
            &format!("/api/auth/identities/{id}"),
            None,
            Auth::Cookie(&c, Some(app.origin())),
        )
        .await;
    del.problem(409);
    let other = app
        .send(
            Method::DELETE,
            "/api/auth/identities/nope",
            None,
            Auth::Cookie(&c, Some(app.origin())),
        )
        .await;
    other.problem(404);
}

#[tokio::test]
async fn denied_consent_ends_on_the_dashboard_with_nothing_created() {
    let (app, gh) = setup().await;
    gh.add_user(9, "shy", &[("shy@x.io", true, true)]);
    gh.deny_next();
    let r = sign_in(&app, &mut Browser::new()).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{}/#/signin?error=access_denied", app.url).as_str())
    );
    assert!(session(&r).is_none());
    assert_eq!(user_count(&app, &["shy@x.io"]).await, 0);
    assert!(gh.token_requests().is_empty());
}

#[tokio::test]
async fn a_missing_or_tampered_state_is_refused_and_nothing_is_created() {
    let (app, gh) = setup().await;
    gh.add_user(11, "eve", &[("eve@x.io", true, true)]);
    gh.sign_in_as("eve");
    let mut b = Browser::new();
    let start = b.get(&format!("{}/api/auth/github/start", app.url)).await;
    let (_, cb) = b.follow_until(start, &app.url).await;
    let cb = cb.unwrap();
    let code = query_param(&cb, "code").unwrap();
    let base = format!("{}/api/auth/github/callback", app.url);

    let tampered = b.get(&format!("{base}?code={code}&state=forged")).await;
    assert_eq!(tampered.status, 400, "{}", tampered.text);
    assert!(tampered.text.contains("state"));
    let missing = b.get(&format!("{base}?code={code}")).await;
    assert_eq!(missing.status, 400);
    // The right state from another browser (no flow cookie).
    let elsewhere = Browser::new().get(&cb).await;
    assert_eq!(elsewhere.status, 400);
    assert_eq!(user_count(&app, &["eve@x.io"]).await, 0);
    assert!(gh.token_requests().is_empty(), "no code was exchanged");

    // The real callback still works once, and only once.
    let ok = b.get(&cb).await;
    assert!(session(&ok).is_some());
    let replay = b.get(&cb).await;
    assert_eq!(replay.status, 400);
}

#[tokio::test]
async fn a_bad_code_or_an_unreachable_provider_ends_on_the_dashboard() {
    let (app, gh) = setup().await;
    gh.add_user(12, "bob", &[("bob@x.io", true, true)]);
    gh.sign_in_as("bob");
    let mut b = Browser::new();
    let start = b.get(&format!("{}/api/auth/github/start", app.url)).await;
    let (_, cb) = b.follow_until(start, &app.url).await;
    let cb = cb.unwrap();
    let state = query_param(&cb, "state").unwrap();
    let bad = b
        .get(&format!(
            "{}/api/auth/github/callback?code=not-a-code&state={state}",
            app.url
        ))
        .await;
    assert_eq!(
        bad.location.as_deref(),
        Some(format!("{}/#/signin?error=provider_rejected", app.url).as_str())
    );

    // GitHub unreachable: a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = TestApp::builder()
        .settings(move |s| {
            s.oauth.github_client_id = Some(github::CLIENT_ID.into());
            s.oauth.github_client_secret = Some(SecretString::from(github::CLIENT_SECRET));
            s.oauth.github_url = format!("http://127.0.0.1:{closed}");
            s.oauth.github_api_url = format!("http://127.0.0.1:{closed}/api");
        })
        .spawn()
        .await;
    let mut b = Browser::new();
    let start = b.get(&format!("{}/api/auth/github/start", down.url)).await;
    let state = query_param(&start.location.unwrap(), "state").unwrap();
    let r = b
        .get(&format!(
            "{}/api/auth/github/callback?code=abc&state={state}",
            down.url
        ))
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{}/#/signin?error=provider_unavailable", down.url).as_str())
    );
}

#[tokio::test]
async fn the_sign_up_policy_applies_to_new_github_accounts() {
    let (app, gh) = setup_with(SignupPolicy::First).await;
    gh.add_user(21, "one", &[("one@x.io", true, true)]);
    gh.add_user(22, "two", &[("two@x.io", true, true)]);
    gh.sign_in_as("one");
    assert!(session(&sign_in(&app, &mut Browser::new()).await).is_some());
    gh.sign_in_as("two");
    let r = sign_in(&app, &mut Browser::new()).await;
    assert_eq!(
        r.location.as_deref(),
        Some(format!("{}/#/signin?error=signup_closed", app.url).as_str())
    );
    // The first account still signs in.
    gh.sign_in_as("one");
    assert!(session(&sign_in(&app, &mut Browser::new()).await).is_some());

    let (closed, gh) = setup_with(SignupPolicy::Closed).await;
    gh.add_user(23, "three", &[("three@x.io", true, true)]);
    gh.sign_in_as("three");
    let r = sign_in(&closed, &mut Browser::new()).await;
    assert!(r.location.unwrap().ends_with("error=signup_closed"));
}

#[tokio::test]
async fn the_domain_allowlist_accepts_only_verified_emails() {
    let gh = GitHubStandIn::start().await;
    let (url, api) = (gh.url.clone(), gh.api_url());
    let app = TestApp::builder()
        .settings(move |s| {
            s.signup_domains = vec!["corp.io".into()];
            s.oauth.github_client_id = Some(github::CLIENT_ID.into());
            s.oauth.github_client_secret = Some(SecretString::from(github::CLIENT_SECRET));
            s.oauth.github_url = url;
            s.oauth.github_api_url = api;
        })
        .spawn()
        .await;
    gh.add_user(31, "in", &[("in@corp.io", true, true)]);
    gh.add_user(32, "out", &[("out@else.io", true, true)]);
    gh.add_user(33, "claims", &[("claims@corp.io", false, true)]);
    gh.sign_in_as("in");
    assert!(session(&sign_in(&app, &mut Browser::new()).await).is_some());
    for login in ["out", "claims"] {
        gh.sign_in_as(login);
        let r = sign_in(&app, &mut Browser::new()).await;
        assert!(
            r.location.unwrap().ends_with("error=signup_closed"),
            "{login}"
        );
    }
    assert_eq!(
        user_count(&app, &["out@else.io", "claims@corp.io"]).await,
        0
    );
}

#[tokio::test]
async fn a_verified_email_takes_the_address_from_an_unconfirmed_account() {
    let (app, gh) = setup_where(|s| {
        s.signup = SignupPolicy::First;
        s.signup_domains = vec!["corp.io".into()];
    })
    .await;
    // Someone types a colleague's address first (and so takes the first
    // account's place); they cannot open the link mailed to it.
    let squat = app.sign_up("kim@corp.io", "squatters-password").await;
    assert_eq!(squat.status, 201, "{}", squat.body);
    let squat_cookie = squat.cookie().unwrap();

    gh.add_user(41, "kim", &[("kim@corp.io", true, true)]);
    gh.sign_in_as("kim");
    let page = sign_in(&app, &mut Browser::new()).await;
    let cookie = session(&page).expect("the address's owner gets in");
    let me = app
        .send(
            Method::GET,
            "/api/auth/me",
            None,
            Auth::Cookie(&cookie, None),
        )
        .await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["emailConfirmed"], json!(true));
    assert_ne!(me.body["user"]["id"], squat.body["user"]["id"]);
    // The unconfirmed account is gone: its session and its password.
    app.send(
        Method::GET,
        "/api/auth/me",
        None,
        Auth::Cookie(&squat_cookie, None),
    )
    .await
    .problem(401);
    app.send(
        Method::POST,
        "/api/auth/token",
        Some(json!({"email": "kim@corp.io", "password": "squatters-password"})),
        Auth::None,
    )
    .await
    .problem(401);
    // The owner holds the first account's place now.
    app.sign_up("lee@corp.io", "another-password-1")
        .await
        .problem(403);
}
