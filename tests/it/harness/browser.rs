//! A browserless "browser" for sign-in flows: follows nothing by itself,
//! keeps cookies per origin (host and port — stricter than a real browser,
//! which shares cookies across ports), and can follow redirects until a
//! given origin is reached.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use std::collections::HashMap;

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub text: String,
}

impl Page {
    /// The value of a cookie this response set (empty = cleared).
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (n, v) = first.split_once('=')?;
            (n.trim() == name).then(|| v.to_string())
        })
    }
}

pub struct Browser {
    client: reqwest::Client,
    jars: HashMap<String, HashMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

pub fn origin_of(url: &str) -> String {
    let u = reqwest::Url::parse(url).expect("absolute url");
    format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""))
        + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
}

/// Resolve `location` against `base`.
pub fn resolve(base: &str, location: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(location))
        .expect("resolvable location")
        .to_string()
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .unwrap(),
            jars: HashMap::new(),
        }
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jars.get(&origin_of(url))?.get(name).cloned()
    }

    pub fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        self.jars
            .entry(origin_of(url))
            .or_default()
            .insert(name.to_string(), value.to_string());
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Page {
        let origin = origin_of(url);
        let jar = self.jars.entry(origin.clone()).or_default();
        let req = if jar.is_empty() {
            req
        } else {
            let header = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req.header(COOKIE, header)
        };
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| resolve(url, l));
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        for c in &set_cookies {
            let first = c.split(';').next().unwrap_or_default();
            if let Some((n, v)) = first.split_once('=') {
                let expired = c.to_ascii_lowercase().contains("max-age=0") || v.is_empty();
                if expired {
                    jar.remove(n.trim());
                } else {
                    jar.insert(n.trim().to_string(), v.to_string());
                }
            }
        }
        let text = resp.text().await.unwrap_or_default();
        Page {
            status,
            url: url.to_string(),
            location,
            set_cookies,
            text,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.client.get(url);
        self.send(req, url).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let req = self.client.post(url).form(form);
        self.send(req, url).await
    }

    /// POST JSON with an Origin header (the dashboard's fetch).
    pub async fn post_json(&mut self, url: &str, origin: &str, body: serde_json::Value) -> Page {
        let req = self.client.post(url).header("origin", origin).json(&body);
        self.send(req, url).await
    }

    /// Follow redirects from `page` until one points into `stop_origin` (not
    /// requested) or a page is not a redirect. Returns the last page and,
    /// when stopped, the URL it pointed to.
    pub async fn follow_until(
        &mut self,
        mut page: Page,
        stop_origin: &str,
    ) -> (Page, Option<String>) {
        for _ in 0..20 {
            let Some(next) = page.location.clone() else {
                return (page, None);
            };
            if next.starts_with(stop_origin) {
                return (page, Some(next));
            }
            page = self.get(&next).await;
        }
        panic!("too many redirects");
    }
}
