//! Reaching an environment's agent from a test: `e-<id>.localhost` names
//! (resolved to loopback here, whatever the machine's resolver does) and
//! ticket redemption.

/// A client for one environment's agent: `e-<id>.localhost` resolves to
/// loopback, no redirects followed.
pub fn agent_client(ide_url: &str) -> reqwest::Client {
    let url = reqwest::Url::parse(ide_url).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], url.port().unwrap()));
    reqwest::Client::builder()
        .resolve(url.host_str().unwrap(), addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// Redeem a ticket URL; returns the agent's session cookie (`name=value`).
pub async fn redeem(client: &reqwest::Client, ticket_url: &str) -> String {
    let r = client.get(ticket_url).send().await.unwrap();
    assert_eq!(r.status(), 303, "ticket refused: {}", r.status());
    assert_eq!(r.headers()["location"], "/");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// The origin part of an IDE URL (`http://e-<id>.localhost:<port>`).
pub fn origin_of(ide_url: &str) -> String {
    ide_url.trim_end_matches('/').to_string()
}
