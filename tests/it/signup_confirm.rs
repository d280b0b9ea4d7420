//! Password sign-up under an email-domain allowlist: the account exists but
//! can do nothing until the single-use, expiring link mailed to the address
//! is opened (issue 16, item 1). Mail goes through the SMTP stand-in
//! (`fakes::smtp`), or in `serve` without SMTP into the log.

use crate::fakes::smtp::{SmtpServer, token_in};
use crate::harness::logs::capture_process;
use crate::harness::{Auth, Mode, PASSWORD, TestApp};
use chrono::Duration;
use dev8::config::{Settings, SignupPolicy, StoreKind};
use dev8::http::ROUTES;
use dev8::http::error::EMAIL_UNCONFIRMED;
use reqwest::Method;
use serde_json::{Value, json};

/// An app with the allowlist `corp.example`, mailing through `smtp`.
async fn app_with(smtp: &SmtpServer) -> TestApp {
    app_where(smtp, |_| {}).await
}

async fn app_where(smtp: &SmtpServer, more: impl FnOnce(&mut Settings) + 'static) -> TestApp {
    let through_smtp = smtp.configure();
    TestApp::builder()
        .settings(move |s| {
            s.signup_domains = vec!["corp.example".into()];
            through_smtp(s);
            more(s);
        })
        .spawn()
        .await
}

/// Sign up with a password; the account's bearer token (sessions and
/// tokens work for an unconfirmed account: it may sign in to confirm).
async fn unconfirmed(app: &TestApp, email: &str) -> String {
    let a = app.sign_up(email, PASSWORD).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["user"]["emailConfirmed"], json!(false));
    assert_eq!(a.body["confirmationMailed"], json!(true));
    app.api_token(email).await
}

async fn confirm(app: &TestApp, token: &str) -> crate::harness::Answer {
    app.send(
        Method::POST,
        "/api/auth/confirm",
        Some(json!({"token": token})),
        Auth::None,
    )
    .await
}

fn concrete(path: &str) -> String {
    path.replace("{id}", &dev8::domain::new_id())
        .replace("{provider}", "github")
}

/// What an unconfirmed account may still do.
const ALLOWED: &[&str] = &["AuthMe", "AuthDeleteMe", "AuthSignout", "AuthConfirmResend"];

#[tokio::test]
async fn an_unconfirmed_account_can_do_nothing_else() {
    let smtp = SmtpServer::spawn().await;
    let app = app_with(&smtp).await;
    let pending = unconfirmed(&app, "ann@corp.example").await;
    let confirmed = app.user("op@corp.example").await;
    // The second account confirms through its own mail.
    let t = smtp.link_token("op@corp.example").await;
    let ok = confirm(&app, &t).await;
    assert_eq!(ok.status, 200, "{} {t}", ok.body);

    let mut checked = Vec::new();
    for route in ROUTES.iter().filter(|r| !ALLOWED.contains(&r.function)) {
        let method: Method = route.method.parse().unwrap();
        let path = concrete(route.path);
        let body = (method != Method::GET).then(|| json!({}));
        // A route for signed-in people: 401 without a session, something
        // else with a confirmed one.
        let anonymous = app
            .send(method.clone(), &path, body.clone(), Auth::None)
            .await;
        let with_confirmed = app
            .send(
                method.clone(),
                &path,
                body.clone(),
                Auth::Bearer(&confirmed.token),
            )
            .await;
        if anonymous.status != 401 || with_confirmed.status == 401 {
            continue;
        }
        let answer = app.send(method, &path, body, Auth::Bearer(&pending)).await;
        answer.problem(403);
        assert_eq!(answer.body["type"], json!(EMAIL_UNCONFIRMED), "{route:?}");
        checked.push(route.function);
    }
    for f in [
        "EnvironmentsCreate",
        "EnvironmentsList",
        "Audit",
        "AuthIdentities",
        "AuthProviderLink",
    ] {
        assert!(checked.contains(&f), "{f} not checked: {checked:?}");
    }
    // Nothing was made on the unconfirmed account's behalf.
    let store = &app.platform.store;
    let user = store
        .user_by_email("ann@corp.example")
        .await
        .unwrap()
        .unwrap();
    assert!(store.environments(&user.id).await.unwrap().is_empty());

    // What it needs still works: who am I (so the dashboard can say
    // "check your mail"), sign-out, deletion.
    let me = app
        .send(Method::GET, "/api/auth/me", None, Auth::Bearer(&pending))
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["user"]["emailConfirmed"], json!(false));
    let bye = app
        .send(Method::DELETE, "/api/auth/me", None, Auth::Bearer(&pending))
        .await;
    assert_eq!(bye.status, 204);
    assert!(
        store
            .user_by_email("ann@corp.example")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_mailed_link_confirms_once() {
    let smtp = SmtpServer::spawn().await;
    link_confirms_once(&app_with(&smtp).await, &smtp).await;
}

#[tokio::test]
#[ignore = "full tier: needs the Cosmos-compatible server"]
async fn the_mailed_link_confirms_once_on_cosmos() {
    let db = crate::peers::cosmos::cosmos_config();
    let smtp = SmtpServer::spawn().await;
    let app = app_where(&smtp, move |s| {
        s.store = StoreKind::Cosmos;
        s.cosmos.endpoint = Some(db.endpoint);
        s.cosmos.key = db.key;
        s.cosmos.database = db.database;
        s.cosmos.create_containers = true;
    })
    .await;
    link_confirms_once(&app, &smtp).await;
}

/// Sign up, confirm with the mailed link, and find the link used up.
async fn link_confirms_once(app: &TestApp, smtp: &SmtpServer) {
    let pending = unconfirmed(app, "bo@corp.example").await;
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "dev8@corp.example");
    assert_eq!(mails[0].to, vec!["bo@corp.example".to_string()]);
    assert!(
        mails[0]
            .data
            .contains("Subject: Confirm your email address for Dev8")
    );
    assert!(
        mails[0]
            .data
            .contains(&format!("{}/#/confirm?token=", app.url))
    );

    // Bad input names the field and changes nothing.
    let none = app
        .send(
            Method::POST,
            "/api/auth/confirm",
            Some(json!({})),
            Auth::None,
        )
        .await;
    assert!(none.problem(400)["token"].is_string(), "{}", none.body);
    let forged = confirm(app, "e30.e30.e30").await;
    assert!(forged.problem(400)["token"].is_string());
    // A session token is not a confirmation link.
    assert!(confirm(app, &pending).await.problem(400)["token"].is_string());
    app.get_as(&pending, "/api/environments").await.problem(403);

    let link = smtp.link_token("bo@corp.example").await;
    let ok = confirm(app, &link).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["user"]["emailConfirmed"], json!(true));
    // The same session can now do everything.
    assert_eq!(app.get_as(&pending, "/api/environments").await.status, 200);
    let me = app.get_as(&pending, "/api/auth/me").await;
    assert_eq!(me.body["user"]["emailConfirmed"], json!(true));
    // Once: the link is used up.
    let again = confirm(app, &link).await;
    assert!(again.problem(400)["token"].is_string());
    let audit = app.get_as(&pending, "/api/audit").await;
    let actions: Vec<&str> = audit.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(actions.contains(&"auth.confirm"), "{actions:?}");
}

#[tokio::test]
async fn a_new_link_replaces_the_old_and_both_expire() {
    let smtp = SmtpServer::spawn().await;
    let app = app_with(&smtp).await;
    let pending = unconfirmed(&app, "cy@corp.example").await;
    let pending_id = app
        .platform
        .store
        .user_by_email("cy@corp.example")
        .await
        .unwrap()
        .unwrap()
        .id;
    let first = smtp.link_token("cy@corp.example").await;
    let resend = app
        .send(
            Method::POST,
            "/api/auth/confirm/resend",
            None,
            Auth::Bearer(&pending),
        )
        .await;
    assert_eq!(resend.status, 202, "{}", resend.body);
    assert_eq!(smtp.received().len(), 2);
    let second = smtp.link_token("cy@corp.example").await;
    assert_ne!(first, second);
    assert!(confirm(&app, &first).await.problem(400)["token"].is_string());

    // A day later the link and the account are gone: the session is
    // refused, sign-in fails, and the address is free for a new sign-up.
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    assert!(confirm(&app, &second).await.problem(400)["token"].is_string());
    app.get_as(&pending, "/api/auth/me").await.problem(401);
    let signin = app
        .send(
            Method::POST,
            "/api/auth/token",
            Some(json!({"email": "cy@corp.example", "password": PASSWORD})),
            Auth::None,
        )
        .await;
    signin.problem(401);
    // (Tokens are checked against the wall clock, which this test's clock
    // is now a day ahead of: the new account's link is not opened here.)
    let again = app.sign_up("cy@corp.example", PASSWORD).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_ne!(again.body["user"]["id"], json!(pending_id));
    assert_eq!(smtp.received().len(), 3);
}

#[tokio::test]
async fn an_unexpired_unconfirmed_account_keeps_its_address_from_a_typed_sign_up() {
    let smtp = SmtpServer::spawn().await;
    let app = app_with(&smtp).await;
    unconfirmed(&app, "di@corp.example").await;
    let second = app.sign_up("di@corp.example", "another-password-1").await;
    assert!(second.problem(409)["email"].is_string());
    // Resending for a confirmed account is a conflict, not a new link.
    let t = smtp.link_token("di@corp.example").await;
    assert_eq!(confirm(&app, &t).await.status, 200);
    let bearer = app.api_token("di@corp.example").await;
    let resend = app
        .send(
            Method::POST,
            "/api/auth/confirm/resend",
            None,
            Auth::Bearer(&bearer),
        )
        .await;
    resend.problem(409);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test]
async fn an_expired_unconfirmed_account_gives_up_the_first_place() {
    let smtp = SmtpServer::spawn().await;
    let app = app_where(&smtp, |s| s.signup = SignupPolicy::First).await;
    // Someone takes the first account's place with an address they cannot
    // confirm: sign-up is closed for everyone else meanwhile ...
    unconfirmed(&app, "ghost@corp.example").await;
    app.sign_up("eve@corp.example", PASSWORD).await.problem(403);
    // ... but only until the unconfirmed account expires.
    app.clock
        .advance(Duration::hours(24) + Duration::seconds(1));
    let taken = app.sign_up("eve@corp.example", PASSWORD).await;
    assert_eq!(taken.status, 201, "{}", taken.body);
    let store = &app.platform.store;
    assert!(
        store
            .user_by_email("ghost@corp.example")
            .await
            .unwrap()
            .is_none()
    );
    // The new account holds the place now.
    app.sign_up("fay@corp.example", PASSWORD).await.problem(403);
}

#[tokio::test]
async fn serve_without_smtp_writes_the_link_into_the_log() {
    let captured = capture_process();
    let app = TestApp::builder()
        .settings(|s| s.signup_domains = vec!["corp.example".into()])
        .spawn()
        .await;
    let pending = unconfirmed(&app, "log-only@corp.example").await;
    // The mail is the log line's message; its fields (`to=`) follow it.
    let text = captured.text();
    let fields = text
        .find("to=log-only@corp.example")
        .expect("the mail is logged with its recipient");
    let link_at = text[..fields]
        .rfind("#/confirm?token=")
        .expect("the link is in the logged mail");
    let line = &text[link_at..fields];
    let link = token_in(line).unwrap_or_else(|| panic!("no link in the log: {line}"));
    assert_eq!(confirm(&app, &link).await.status, 200);
    assert_eq!(app.get_as(&pending, "/api/environments").await.status, 200);

    // `functions` without SMTP has nowhere to send the link: refused, and
    // no account.
    let azure = TestApp::builder()
        .mode(Mode::Functions)
        .settings(|s| s.signup_domains = vec!["corp.example".into()])
        .spawn()
        .await;
    azure.sign_up("x@corp.example", PASSWORD).await.problem(403);
    assert!(
        azure
            .platform
            .store
            .user_by_email("x@corp.example")
            .await
            .unwrap()
            .is_none()
    );
}

impl TestApp {
    async fn get_as(&self, bearer: &str, path: &str) -> crate::harness::Answer {
        self.send(Method::GET, path, None::<Value>, Auth::Bearer(bearer))
            .await
    }
}
