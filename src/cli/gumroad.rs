//! `keystead gumroad …`: point Gumroad's resource subscriptions at a tenant's ping URL, list them, delete one. The
//! URL is checked against the tenant's token before Gumroad sees it, so a subscription never points at a dead URL.

use clap::Subcommand;
use serde_json::json;

use super::gumroad_api::{ApiError, GumroadApi, RESOURCES, Subscription};
use super::tenant::load;
use super::{CliError, Output, clients, store};
use crate::domain::{TenantId, TokenHash, WebhookToken};

#[derive(Debug, Subcommand)]
pub enum GumroadCommand {
    /// Subscribe the tenant's ping URL to Gumroad events (all of them by default); prints the subscription ids.
    Subscribe {
        tenant_id: String,
        /// The ping URL printed by `keystead tenant create` or `rotate-token`.
        #[arg(long)]
        webhook_url: String,
        /// Comma-separated: sale, refund, dispute, dispute_won, cancellation, subscription_ended,
        /// subscription_restarted, subscription_updated.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// List the Gumroad resource subscriptions (for every event, or the ones given).
    Subscriptions {
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
    },
    /// Delete one Gumroad resource subscription by id.
    Unsubscribe { id: String },
    /// Import past Gumroad sales of mapped products as licenses (idempotent: run it again to resume).
    Import {
        tenant_id: String,
        /// Only sales of this product (slug or URL); repeat for several.
        #[arg(long = "product")]
        products: Vec<String>,
        /// Only sales after this day (YYYY-MM-DD).
        #[arg(long)]
        after: Option<String>,
        /// Only sales before this day (YYYY-MM-DD).
        #[arg(long)]
        before: Option<String>,
        /// Read everything and print the summary; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Email each imported license's key (products whose key email is on); by default nothing is sent.
        #[arg(long)]
        send_email: bool,
    },
}

fn api() -> Result<GumroadApi, CliError> {
    GumroadApi::from_env().map_err(CliError::Config)
}

/// The events asked for, deduplicated in Gumroad's order; all of them when none are given.
fn parse_events(raw: &[String]) -> Result<Vec<&'static str>, CliError> {
    let wanted: Vec<&str> = raw
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .collect();
    if let Some(unknown) = wanted.iter().find(|e| !RESOURCES.contains(e)) {
        return Err(CliError::Invalid(format!(
            "unknown Gumroad event '{unknown}': use {}",
            RESOURCES.join(", ")
        )));
    }
    Ok(RESOURCES
        .into_iter()
        .filter(|r| wanted.is_empty() || wanted.contains(r))
        .collect())
}

/// The token a ping URL carries: `?token=`, or the password of `https://user:token@host/…`.
pub(crate) fn url_token(uri: &ureq::http::Uri) -> Option<String> {
    let from_query = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let from_userinfo = || {
        let authority = uri.authority()?.as_str();
        let (userinfo, _) = authority.rsplit_once('@')?;
        let (_, password) = userinfo.split_once(':')?;
        percent_encoding::percent_decode_str(password)
            .decode_utf8()
            .ok()
            .map(|p| p.into_owned())
    };
    from_query.or_else(from_userinfo).filter(|t| !t.is_empty())
}

/// Gumroad refuses post URLs on the local machine or a private network; so does keystead, before asking.
/// (Host names are not resolved here: Gumroad does that itself.)
fn is_local_host(host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_broadcast()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some()
        }
        Err(_) => false,
    }
}

/// Checks that `raw` is a ping URL Gumroad accepts and that calls this tenant with its current token, and
/// returns the token.
fn check_webhook_url(
    raw: &str,
    tenant_id: &TenantId,
    token_hash: &str,
) -> Result<String, CliError> {
    let invalid = |why: &str| CliError::Invalid(format!("invalid webhook URL: {why}"));
    let uri: ureq::http::Uri = raw
        .trim()
        .parse()
        .map_err(|_| invalid("not a URL; pass the ping URL `keystead tenant create` printed"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(invalid("Gumroad only calls http(s) URLs"));
    }
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(invalid("it has no host"));
    }
    if is_local_host(host) {
        return Err(invalid(
            "Gumroad refuses localhost, 127.0.0.1, 0.0.0.0 and private addresses; use the deployed stack's ApiUrl (or a public tunnel)",
        ));
    }
    let expected_path = format!("/webhooks/gumroad/{tenant_id}");
    if uri.path().trim_end_matches('/') != expected_path {
        return Err(invalid(&format!(
            "its path must be {expected_path} for tenant '{tenant_id}'"
        )));
    }
    let Some(token) = url_token(&uri) else {
        return Err(invalid(
            "it carries no token; use the ping URL printed by `keystead tenant create` or `rotate-token`",
        ));
    };
    let presented = WebhookToken::from_string(token.clone()).hash();
    let stored = TokenHash::from_hex(token_hash).unwrap_or(TokenHash([0; 32]));
    let matches: bool = presented.ct_matches(&stored).into();
    if !matches {
        return Err(invalid(&format!(
            "its token is not tenant '{tenant_id}''s current token (rotated?); use the URL printed by the last `keystead tenant create` or `rotate-token`"
        )));
    }
    Ok(token)
}

/// A post URL as keystead shows it: the token (query or password) replaced, since it is shown only once.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return "<unparseable URL>".to_owned();
    };
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let query = uri.query().map(|q| {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("token", _)) => "token=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect();
        format!("?{}", pairs.join("&"))
    });
    format!(
        "{}://{authority}{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.path(),
        query.unwrap_or_default()
    )
}

/// What went wrong at Gumroad, and what to do about it. `subject` names what the call was about.
pub(crate) fn api_error(err: ApiError, api: &GumroadApi, subject: &str) -> CliError {
    let said = |message: &str| {
        if message.is_empty() {
            String::new()
        } else {
            format!(" (Gumroad: \"{message}\")")
        }
    };
    match err {
        ApiError::Refused {
            status: 400,
            message,
        } => CliError::Invalid(format!(
            "Gumroad refused {subject}{}: the post URL must be a public http(s) URL and the event one Gumroad knows",
            said(&message)
        )),
        ApiError::Refused {
            status: 401,
            message,
        } => CliError::Gumroad(format!(
            "Gumroad rejected the access token{}: set GUMROAD_ACCESS_TOKEN to a valid token (Gumroad → Settings → Advanced → Applications)",
            said(&message)
        )),
        ApiError::Refused {
            status: 403,
            message,
        } => CliError::Gumroad(format!(
            "the Gumroad access token lacks the view_sales scope{}: generate a token with view_sales and set GUMROAD_ACCESS_TOKEN",
            said(&message)
        )),
        ApiError::Refused {
            status: 404,
            message,
        } => CliError::NotFound(format!(
            "Gumroad found no {subject}{}: list the subscriptions with `keystead gumroad subscriptions` (and check GUMROAD_API_URL)",
            said(&message)
        )),
        ApiError::Refused {
            status: 422,
            message,
        } => CliError::Gumroad(format!(
            "Gumroad could not process {subject}{}: check the webhook URL and events, then try again",
            said(&message)
        )),
        ApiError::Refused { status, message } if status >= 500 => CliError::Gumroad(format!(
            "Gumroad failed with HTTP {status}{}: try again later",
            said(&message)
        )),
        ApiError::Refused { status, message } => CliError::Gumroad(format!(
            "Gumroad refused {subject} with HTTP {status}{}",
            said(&message)
        )),
        ApiError::Unreachable(detail) => CliError::Gumroad(format!(
            "cannot reach Gumroad at {} ({}): check the network and GUMROAD_API_URL",
            api.base(),
            super::first_line(&detail)
        )),
        ApiError::BadResponse(detail) => CliError::Gumroad(format!(
            "unexpected answer from Gumroad at {} ({detail}): check GUMROAD_API_URL",
            api.base()
        )),
    }
}

fn subscription_json(sub: &Subscription) -> serde_json::Value {
    json!({
        "id": sub.id,
        "resource_name": sub.resource_name,
        "post_url": redact_url(&sub.post_url),
    })
}

pub async fn run(command: GumroadCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        GumroadCommand::Import {
            tenant_id,
            products,
            after,
            before,
            dry_run,
            send_email,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let options = super::import::ImportOptions {
                products: products
                    .iter()
                    .map(|p| crate::domain::Permalink::parse(p))
                    .collect::<Result<_, _>>()?,
                after: after
                    .as_deref()
                    .map(super::import::parse_date)
                    .transpose()?,
                before: before
                    .as_deref()
                    .map(super::import::parse_date)
                    .transpose()?,
                dry_run,
                send_email,
            };
            let api = api()?;
            let (store, mailer) = clients().await?;
            let tenant = load(&store, &tenant_id).await?;
            super::import::run(&store, mailer.as_ref(), &api, &tenant, &options, out)
                .await
                .map_err(|err| api_error(err, &api, "the sales listing"))?;
            if !dry_run && !tenant.gumroad_verify {
                // The imported buyers' apps may still call Gumroad's verify: answer it for them.
                store
                    .update_tenant(
                        &tenant_id,
                        &[(
                            "gumroad_verify",
                            aws_sdk_dynamodb::types::AttributeValue::Bool(true),
                        )],
                    )
                    .await?;
                out.line(format!(
                    "Gumroad's verify now answers for tenant {tenant_id} (turn it off with `keystead tenant set {tenant_id} --gumroad-verify off`)."
                ));
            }
        }
        GumroadCommand::Subscribe {
            tenant_id,
            webhook_url,
            events,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let events = parse_events(&events)?;
            let api = api()?;
            let tenant = load(&store().await?, &tenant_id).await?;
            let token = check_webhook_url(&webhook_url, &tenant_id, &tenant.token_hash)?;
            let post_url = webhook_url.trim();
            // One PUT per event. ureq blocks, which is fine: nothing else runs in the CLI meanwhile.
            let mut created: Vec<Subscription> = Vec::new();
            for event in events {
                match api.subscribe(event, post_url) {
                    Ok(sub) => created.push(sub),
                    Err(err) => {
                        // Gumroad quotes a refused post URL back; the token stays out of the message.
                        let err = api_error(
                            err.without(&token),
                            &api,
                            &format!("the '{event}' subscription"),
                        );
                        if created.is_empty() {
                            return Err(err);
                        }
                        let done: Vec<String> = created
                            .iter()
                            .map(|s| format!("{}={}", s.resource_name, s.id))
                            .collect();
                        return Err(CliError::Gumroad(format!(
                            "{err} [already subscribed: {}]",
                            done.join(", ")
                        )));
                    }
                }
            }
            out.line(format!(
                "Subscribed {} to {} Gumroad event(s):",
                redact_url(post_url),
                created.len()
            ));
            let rows: Vec<Vec<String>> = created
                .iter()
                .map(|s| vec![format!("  {}", s.resource_name), s.id.clone()])
                .collect();
            out.table(&["  EVENT", "SUBSCRIPTION ID"], &rows);
            out.document(json!({
                "tenant_id": tenant_id,
                "post_url": redact_url(post_url),
                "subscriptions": created.iter().map(subscription_json).collect::<Vec<_>>(),
            }));
        }
        GumroadCommand::Subscriptions { events } => {
            let events = parse_events(&events)?;
            let api = api()?;
            let mut all: Vec<Subscription> = Vec::new();
            for event in events {
                let subs = api
                    .list(event)
                    .map_err(|e| api_error(e, &api, &format!("the '{event}' subscriptions")))?;
                all.extend(subs);
            }
            if all.is_empty() {
                out.line("No Gumroad resource subscriptions.");
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            s.resource_name.clone(),
                            redact_url(&s.post_url),
                        ]
                    })
                    .collect();
                out.table(&["ID", "EVENT", "POST URL"], &rows);
            }
            out.document(json!({
                "subscriptions": all.iter().map(subscription_json).collect::<Vec<_>>(),
            }));
        }
        GumroadCommand::Unsubscribe { id } => {
            let id = id.trim().to_owned();
            if id.is_empty()
                || id.len() > 128
                || id.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(CliError::Invalid(format!(
                    "invalid subscription id '{id}': use an id printed by `keystead gumroad subscriptions`"
                )));
            }
            let api = api()?;
            api.unsubscribe(&id)
                .map_err(|e| api_error(e, &api, &format!("resource subscription '{id}'")))?;
            out.line(format!("Deleted Gumroad resource subscription {id}."));
            out.document(json!({"id": id, "deleted": true}));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn events_default_to_all_and_are_checked() {
        assert_eq!(parse_events(&[]).map(|e| e.len()).ok(), Some(8));
        let some = parse_events(&["refund".into(), "sale".into(), "sale".into()]).ok();
        assert_eq!(some, Some(vec!["sale", "refund"]));
        assert!(parse_events(&["sales".into()]).is_err());
    }

    #[test]
    fn webhook_urls_must_be_public_and_carry_the_current_token() {
        let token = WebhookToken::generate().unwrap();
        let hash = token.hash().to_hex();
        let t = token.expose();
        let ok = [
            format!("https://api.example.com/webhooks/gumroad/acme?token={t}"),
            format!("https://api.example.com/webhooks/gumroad/acme/?token={t}"),
            format!("https://gumroad:{t}@api.example.com/webhooks/gumroad/acme"),
            format!("http://203.0.113.9:8080/webhooks/gumroad/acme?x=1&token={t}"),
        ];
        for url in &ok {
            assert!(check_webhook_url(url, &tenant(), &hash).is_ok(), "{url}");
        }
        let bad = [
            format!("ftp://api.example.com/webhooks/gumroad/acme?token={t}"),
            format!("https://localhost/webhooks/gumroad/acme?token={t}"),
            format!("http://127.0.0.1:9000/webhooks/gumroad/acme?token={t}"),
            format!("http://0.0.0.0/webhooks/gumroad/acme?token={t}"),
            format!("http://[::1]/webhooks/gumroad/acme?token={t}"),
            format!("http://192.168.1.10/webhooks/gumroad/acme?token={t}"),
            format!("http://app.localhost/webhooks/gumroad/acme?token={t}"),
            format!("https://api.example.com/webhooks/gumroad/other?token={t}"),
            format!("https://api.example.com/hooks/acme?token={t}"),
            "https://api.example.com/webhooks/gumroad/acme".to_owned(),
            "https://api.example.com/webhooks/gumroad/acme?token=wrong".to_owned(),
            "not a url".to_owned(),
        ];
        for url in &bad {
            assert!(check_webhook_url(url, &tenant(), &hash).is_err(), "{url}");
        }
    }

    #[test]
    fn shown_urls_hide_the_token() {
        assert_eq!(
            redact_url("https://api.example.com/webhooks/gumroad/acme?token=secret&x=1"),
            "https://api.example.com/webhooks/gumroad/acme?token=***&x=1"
        );
        assert_eq!(
            redact_url("https://u:secret@api.example.com/webhooks/gumroad/acme"),
            "https://u:***@api.example.com/webhooks/gumroad/acme"
        );
    }
}
