//! Sending mail: the `Mailer` port, used for the link that confirms a
//! password account's address under an email-domain allowlist. Adapters:
//! `SmtpMailer` (lettre over tokio, rustls; `DEV8_SMTP_*`) and, in `serve`
//! without SMTP, `LogMailer`, which writes the mail into the log — the one
//! secret (a confirmation link) the log may hold.

use anyhow::Context;
use async_trait::async_trait;
use clap::{Args, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// One plain-text mail.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()>;
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required), usually port 587.
    Starttls,
    /// TLS from the first byte (implicit TLS), usually port 465.
    Tls,
    /// No encryption: only for a relay on the same host or network.
    None,
}

/// The SMTP server the confirmation mail goes through.
#[derive(Debug, Clone, Args)]
pub struct SmtpSettings {
    /// SMTP server host; unset: no mail is sent (`serve` writes the
    /// confirmation link into its log instead; Azure refuses password
    /// sign-up under an allowlist).
    #[arg(long, env = "DEV8_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP server port.
    #[arg(long, env = "DEV8_SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,
    /// How the connection is protected.
    #[arg(long, env = "DEV8_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,
    /// SMTP user name (with the password: AUTH); unset: no authentication.
    #[arg(long, env = "DEV8_SMTP_USER")]
    pub smtp_user: Option<String>,
    /// SMTP password (Azure: a Key Vault reference to `dev8-smtp-password`).
    #[arg(long, env = "DEV8_SMTP_PASSWORD", value_parser = secret, hide_env_values = true)]
    pub smtp_password: Option<SecretString>,
    /// The sender address, e.g. `Dev8 <dev8@corp.example>`.
    #[arg(long, env = "DEV8_SMTP_FROM")]
    pub smtp_from: Option<String>,
}

fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(s.to_string()))
}

type Transport = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// Mail through an SMTP server (RFC 5321), one connection per mail.
pub struct SmtpMailer {
    transport: Transport,
    from: lettre::message::Mailbox,
}

impl SmtpMailer {
    /// The mailer the settings describe; `None` without `DEV8_SMTP_HOST`.
    pub fn from_settings(s: &SmtpSettings) -> anyhow::Result<Option<Self>> {
        let Some(host) = s.smtp_host.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let from = s
            .smtp_from
            .as_deref()
            .context("DEV8_SMTP_HOST needs DEV8_SMTP_FROM (the sender address)")?
            .parse()
            .context("DEV8_SMTP_FROM is not a mail address")?;
        let builder = match s.smtp_tls {
            SmtpTls::Starttls => Transport::starttls_relay(host).context("DEV8_SMTP_HOST")?,
            SmtpTls::Tls => Transport::relay(host).context("DEV8_SMTP_HOST")?,
            SmtpTls::None => Transport::builder_dangerous(host),
        };
        let mut builder = builder
            .port(s.smtp_port)
            .timeout(Some(Duration::from_secs(30)));
        // An empty value is unset (local.settings.json lists every name).
        let user = s.smtp_user.as_deref().filter(|u| !u.is_empty());
        let password = s
            .smtp_password
            .as_ref()
            .map(|p| p.expose_secret())
            .filter(|p| !p.is_empty());
        match (user, password) {
            (Some(user), Some(password)) => {
                builder =
                    builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
                        user.to_string(),
                        password.to_string(),
                    ));
            }
            (None, None) => {}
            _ => anyhow::bail!("DEV8_SMTP_USER and DEV8_SMTP_PASSWORD go together"),
        }
        Ok(Some(SmtpMailer {
            transport: builder.build(),
            from,
        }))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        use lettre::AsyncTransport;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(mail
                .to
                .parse()
                .context("the recipient is not a mail address")?)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.text.clone())
            .context("building the mail")?;
        self.transport
            .send(message)
            .await
            .context("sending the mail over SMTP")?;
        Ok(())
    }
}

/// `serve` without SMTP: the mail goes into the log, where the operator
/// (the one person a default `serve` is for) reads the link.
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        tracing::warn!(
            to = %mail.to,
            subject = %mail.subject,
            "no SMTP server is configured (DEV8_SMTP_HOST), so this mail is written here instead of sent:\n{}",
            mail.text
        );
        Ok(())
    }
}
