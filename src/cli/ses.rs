//! `keystead ses …`: start verifying a sender identity (an address gets SES's confirmation mail, a domain gets the
//! DNS records to add) and show the identities and whether the account is still in the SES sandbox. Also the
//! sender check that `tenant create`, `tenant set --sender` and `doctor` run, so no tenant sends from an address
//! SES will refuse.

use std::collections::BTreeMap;

use aws_sdk_ses::Client;
use aws_sdk_ses::types::VerificationStatus;
use clap::Subcommand;
use serde_json::json;

use super::{CliError, Output, aws_error};
use crate::domain::Email;

#[derive(Debug, Subcommand)]
pub enum SesCommand {
    /// Start verifying a sender: an address gets SES's confirmation mail; a domain prints the TXT and DKIM CNAME
    /// records to add to its DNS.
    Verify {
        /// `licenses@example.com` or `example.com`.
        identity: String,
    },
    /// List the SES identities with their state, and say whether the account is still in the SES sandbox.
    Status,
}

/// What a seller can verify in SES: one address, or a whole domain (every address at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    Address(Email),
    Domain(String),
}

impl Identity {
    pub(crate) fn parse(raw: &str) -> Result<Self, CliError> {
        let raw = raw.trim();
        if raw.contains('@') {
            return Email::parse(raw)
                .map(Self::Address)
                .map_err(|_| CliError::Invalid(format!("invalid email address '{raw}'")));
        }
        let domain = raw.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let valid = domain.len() <= 253
            && domain.split('.').count() >= 2
            && domain.split('.').all(label_ok);
        if valid {
            Ok(Self::Domain(domain))
        } else {
            Err(CliError::Invalid(format!(
                "invalid SES identity '{raw}': give an email address (licenses@example.com) or a domain (example.com)"
            )))
        }
    }
}

/// An identity's verification state, as SES names it (`Pending`, `Success`, `Failed`, `TemporaryFailure`,
/// `NotStarted`).
fn state_name(status: &VerificationStatus) -> String {
    status.as_str().to_owned()
}

/// The account's sending quota, which also tells whether it is still in the sandbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quota {
    pub max_24_hours: f64,
    pub max_per_second: f64,
    pub sent_24_hours: f64,
}

impl Quota {
    /// SES gives sandbox accounts 200 messages a day at 1 a second, and production access at least 50,000: SES v1
    /// has no other way to ask.
    pub(crate) fn in_sandbox(&self) -> bool {
        // SES answers -1 for an unlimited quota.
        (0.0..=200.0).contains(&self.max_24_hours)
    }

    /// What is left of today's quota, as a share of it.
    pub(crate) fn headroom(&self) -> f64 {
        if self.max_24_hours < 0.0 {
            return 1.0;
        }
        if self.max_24_hours == 0.0 {
            return 0.0;
        }
        ((self.max_24_hours - self.sent_24_hours) / self.max_24_hours).max(0.0)
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} emails in 24 hours, {} a second; {} sent in the last 24 hours",
            count(self.max_24_hours),
            count(self.max_per_second),
            count(self.sent_24_hours)
        )
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "max_24_hour_send": self.max_24_hours,
            "max_send_rate": self.max_per_second,
            "sent_last_24_hours": self.sent_24_hours,
        })
    }
}

/// `50000.0` as `50,000`.
fn count(value: f64) -> String {
    if value.fract() != 0.0 {
        return format!("{value}");
    }
    let digits = format!("{value:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How a tenant's sender stands in SES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SenderStanding {
    /// Verified through this identity: the address itself or its domain.
    Verified { identity: String, domain: bool },
    /// Verification was started for this identity but has not finished.
    Pending { identity: String },
    /// No identity covers the address (or verification failed).
    NotVerified,
}

/// The advice for an account in the sandbox, in `region`.
pub(crate) fn sandbox_fix(region: &str) -> String {
    format!(
        "request production access (SES console → Account dashboard → Request production access, or `aws sesv2 put-account-details --production-access-enabled --mail-type TRANSACTIONAL --website-url <your site> --use-case-description \"License keys emailed to buyers after a Gumroad purchase\" --region {region}`); AWS usually answers within a day"
    )
}

/// SES as the seller administers it, in the region of the CLI's configuration.
pub(crate) struct SesAdmin {
    client: Client,
    pub region: String,
}

impl SesAdmin {
    pub(crate) fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            client: Client::new(sdk),
            region: sdk
                .region()
                .map_or_else(|| "(no region)".to_owned(), |r| r.to_string()),
        }
    }

    pub(crate) async fn from_env() -> Self {
        Self::new(&crate::config::aws().await)
    }

    /// The verification state of each identity SES knows among `identities`.
    async fn verification(
        &self,
        identities: &[String],
    ) -> Result<BTreeMap<String, VerificationStatus>, CliError> {
        let mut states = BTreeMap::new();
        for batch in identities.chunks(100) {
            let out = self
                .client
                .get_identity_verification_attributes()
                .set_identities(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| aws_error("SES GetIdentityVerificationAttributes", &e))?;
            for (identity, attributes) in out.verification_attributes() {
                states.insert(
                    identity.to_ascii_lowercase(),
                    attributes.verification_status().clone(),
                );
            }
        }
        Ok(states)
    }

    /// Easy DKIM's state of each domain.
    pub(crate) async fn dkim(
        &self,
        domains: &[String],
    ) -> Result<BTreeMap<String, VerificationStatus>, CliError> {
        let mut states = BTreeMap::new();
        for batch in domains.chunks(100) {
            let out = self
                .client
                .get_identity_dkim_attributes()
                .set_identities(Some(batch.to_vec()))
                .send()
                .await
                .map_err(|e| aws_error("SES GetIdentityDkimAttributes", &e))?;
            for (identity, attributes) in out.dkim_attributes() {
                if attributes.dkim_enabled() {
                    states.insert(
                        identity.to_ascii_lowercase(),
                        attributes.dkim_verification_status().clone(),
                    );
                }
            }
        }
        Ok(states)
    }

    /// Every identity of the account in this region.
    async fn identities(&self) -> Result<Vec<String>, CliError> {
        let mut identities = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .client
                .list_identities()
                .set_next_token(next.take())
                .max_items(1000)
                .send()
                .await
                .map_err(|e| aws_error("SES ListIdentities", &e))?;
            identities.extend(out.identities().iter().cloned());
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(identities)
    }

    pub(crate) async fn quota(&self) -> Result<Quota, CliError> {
        let out = self
            .client
            .get_send_quota()
            .send()
            .await
            .map_err(|e| aws_error("SES GetSendQuota", &e))?;
        Ok(Quota {
            max_24_hours: out.max24_hour_send(),
            max_per_second: out.max_send_rate(),
            sent_24_hours: out.sent_last24_hours(),
        })
    }

    /// Whether SES would send from `sender`: the address or its domain (or a parent domain, whose verification
    /// subdomains inherit) is a verified identity.
    pub(crate) async fn sender_standing(&self, sender: &Email) -> Result<SenderStanding, CliError> {
        let candidates = sender_candidates(sender);
        let states = self.verification(&candidates).await?;
        Ok(standing(&candidates, &states))
    }

    /// Refuses (exit 7) a sender SES would refuse, with the command that fixes it.
    pub(crate) async fn require_verified(&self, sender: &Email) -> Result<(), CliError> {
        match self.sender_standing(sender).await? {
            SenderStanding::Verified { .. } => Ok(()),
            other => {
                let (problem, fix) = unverified_sender(sender, &other, &self.region);
                Err(CliError::Conflict(format!(
                    "{problem}: {fix}; or pass --skip-ses-check to verify it later"
                )))
            }
        }
    }
}

/// The identities that could verify `sender`, most specific first: the address, its domain, the domain's parents.
fn sender_candidates(sender: &Email) -> Vec<String> {
    let mut candidates = vec![sender.as_str().to_owned()];
    let lower = sender.as_str().to_ascii_lowercase();
    if lower != sender.as_str() {
        candidates.push(lower);
    }
    let domain = sender.domain().to_ascii_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    for start in 0..labels.len().saturating_sub(1) {
        candidates.push(labels[start..].join("."));
    }
    candidates
}

fn standing(
    candidates: &[String],
    states: &BTreeMap<String, VerificationStatus>,
) -> SenderStanding {
    let state = |identity: &String| states.get(&identity.to_ascii_lowercase());
    if let Some(identity) = candidates
        .iter()
        .find(|i| state(i) == Some(&VerificationStatus::Success))
    {
        return SenderStanding::Verified {
            identity: identity.clone(),
            domain: !identity.contains('@'),
        };
    }
    if let Some(identity) = candidates
        .iter()
        .find(|i| state(i) == Some(&VerificationStatus::Pending))
    {
        return SenderStanding::Pending {
            identity: identity.clone(),
        };
    }
    SenderStanding::NotVerified
}

/// Why `sender` cannot send yet, and the command that fixes it.
pub(crate) fn unverified_sender(
    sender: &Email,
    standing: &SenderStanding,
    region: &str,
) -> (String, String) {
    let domain = sender.domain().to_ascii_lowercase();
    match standing {
        SenderStanding::Pending { identity } if identity.contains('@') => (
            format!("the SES verification of sender {sender} in {region} is still pending"),
            format!(
                "click the link SES mailed to it (or send a new one with `keystead ses verify {sender}`)"
            ),
        ),
        SenderStanding::Pending { identity } => (
            format!(
                "the SES verification of {identity} (sender {sender}) in {region} is still pending"
            ),
            format!(
                "add the DNS records `keystead ses verify {identity}` prints, and wait for SES to see them"
            ),
        ),
        _ => (
            format!(
                "sender {sender} is not a verified SES identity in {region} (neither the address nor {domain})"
            ),
            format!(
                "run `keystead ses verify {sender}` (or `keystead ses verify {domain}` for every address at the domain)"
            ),
        ),
    }
}

pub async fn run(command: SesCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        SesCommand::Verify { identity } => {
            let identity = Identity::parse(&identity)?;
            let ses = SesAdmin::from_env().await;
            verify(&ses, &identity, out).await
        }
        SesCommand::Status => status(&SesAdmin::from_env().await, out).await,
    }
}

async fn verify(ses: &SesAdmin, identity: &Identity, out: &mut Output) -> Result<(), CliError> {
    let region = &ses.region;
    match identity {
        Identity::Address(address) => {
            ses.client
                .verify_email_identity()
                .email_address(address.as_str())
                .send()
                .await
                .map_err(|e| aws_error("SES VerifyEmailIdentity", &e))?;
            out.line(format!(
                "SES ({region}) sent a confirmation email to {address}: open it and click the link within 24 hours."
            ));
            out.line(
                "Then `keystead ses status` shows it as Success, and tenants can send from it.",
            );
            out.document(json!({
                "identity": address.as_str(),
                "type": "address",
                "region": region,
                "records": [],
            }));
        }
        Identity::Domain(domain) => {
            let token = ses
                .client
                .verify_domain_identity()
                .domain(domain)
                .send()
                .await
                .map_err(|e| aws_error("SES VerifyDomainIdentity", &e))?
                .verification_token()
                .to_owned();
            let dkim = ses
                .client
                .verify_domain_dkim()
                .domain(domain)
                .send()
                .await
                .map_err(|e| aws_error("SES VerifyDomainDkim", &e))?;
            let mut records = vec![(
                "TXT",
                format!("_amazonses.{domain}"),
                format!("\"{token}\""),
            )];
            for token in dkim.dkim_tokens() {
                records.push((
                    "CNAME",
                    format!("{token}._domainkey.{domain}"),
                    format!("{token}.dkim.amazonses.com"),
                ));
            }
            out.line(format!(
                "Started verifying the domain {domain} in SES ({region}). Add these DNS records at your DNS provider:"
            ));
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|(kind, name, value)| vec![format!("  {kind}"), name.clone(), value.clone()])
                .collect();
            out.table(&["  TYPE", "NAME", "VALUE"], &rows);
            out.line("SES checks for them for 72 hours; `keystead ses status` shows Success once it has seen them (DKIM too).");
            out.document(json!({
                "identity": domain,
                "type": "domain",
                "region": region,
                "records": records.iter().map(|(kind, name, value)| json!({
                    "type": kind, "name": name, "value": value,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    Ok(())
}

async fn status(ses: &SesAdmin, out: &mut Output) -> Result<(), CliError> {
    let region = &ses.region;
    let mut identities = ses.identities().await?;
    identities.sort();
    let states = ses.verification(&identities).await?;
    let domains: Vec<String> = identities
        .iter()
        .filter(|i| !i.contains('@'))
        .cloned()
        .collect();
    let dkim = ses.dkim(&domains).await?;
    let quota = ses.quota().await?;
    let rows: Vec<(String, &str, String, String)> = identities
        .iter()
        .map(|identity| {
            let key = identity.to_ascii_lowercase();
            (
                identity.clone(),
                if identity.contains('@') {
                    "address"
                } else {
                    "domain"
                },
                states
                    .get(&key)
                    .map_or_else(|| "NotStarted".to_owned(), state_name),
                dkim.get(&key).map_or_else(|| "-".to_owned(), state_name),
            )
        })
        .collect();
    out.line(format!("SES identities in {region}:"));
    if rows.is_empty() {
        out.line("  (none: start with `keystead ses verify <address or domain>`)");
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(identity, kind, state, dkim)| {
                vec![
                    format!("  {identity}"),
                    (*kind).to_owned(),
                    state.clone(),
                    dkim.clone(),
                ]
            })
            .collect();
        out.table(&["  IDENTITY", "TYPE", "VERIFICATION", "DKIM"], &table);
    }
    let advice = if quota.in_sandbox() {
        format!(
            "Account: in the SES sandbox in {region} ({}). Only verified addresses receive mail, so buyers get no keys: {}.",
            quota.describe(),
            sandbox_fix(region)
        )
    } else {
        format!(
            "Account: production access in {region} ({}).",
            quota.describe()
        )
    };
    out.line(advice.clone());
    out.document(json!({
        "region": region,
        "identities": rows.iter().map(|(identity, kind, state, dkim)| json!({
            "identity": identity,
            "type": kind,
            "verification": state,
            "dkim": (dkim != "-").then_some(dkim),
        })).collect::<Vec<_>>(),
        "sandbox": quota.in_sandbox(),
        "quota": quota.json(),
        "advice": advice,
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> Email {
        Email::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn identities_are_addresses_or_domains() {
        assert_eq!(
            Identity::parse(" Example.COM. ").ok(),
            Some(Identity::Domain("example.com".to_owned()))
        );
        assert_eq!(
            Identity::parse("me@example.com").ok(),
            Some(Identity::Address(email("me@example.com")))
        );
        for bad in [
            "example", "-a.com", "a..com", "a b.com", "me@", "x_y.com", "",
        ] {
            assert!(
                matches!(Identity::parse(bad), Err(CliError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_sender_is_verified_by_its_address_or_a_domain_above_it() {
        let sender = email("Licenses@Mail.Acme.dev");
        assert_eq!(
            sender_candidates(&sender),
            [
                "Licenses@Mail.Acme.dev",
                "licenses@mail.acme.dev",
                "mail.acme.dev",
                "acme.dev"
            ]
        );
        let states = |pairs: &[(&str, VerificationStatus)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        let candidates = sender_candidates(&sender);
        assert_eq!(
            standing(&candidates, &states(&[])),
            SenderStanding::NotVerified
        );
        assert_eq!(
            standing(
                &candidates,
                &states(&[("acme.dev", VerificationStatus::Success)])
            ),
            SenderStanding::Verified {
                identity: "acme.dev".to_owned(),
                domain: true
            }
        );
        assert_eq!(
            standing(
                &candidates,
                &states(&[
                    ("licenses@mail.acme.dev", VerificationStatus::Pending),
                    ("acme.dev", VerificationStatus::Success)
                ])
            ),
            SenderStanding::Verified {
                identity: "acme.dev".to_owned(),
                domain: true
            },
            "a verified domain wins over a pending address"
        );
        assert_eq!(
            standing(
                &candidates,
                &states(&[("mail.acme.dev", VerificationStatus::Pending)])
            ),
            SenderStanding::Pending {
                identity: "mail.acme.dev".to_owned()
            }
        );
        assert_eq!(
            standing(
                &candidates,
                &states(&[("acme.dev", VerificationStatus::Failed)])
            ),
            SenderStanding::NotVerified
        );
    }

    #[test]
    fn an_unlimited_quota_is_neither_the_sandbox_nor_used_up() {
        let unlimited = Quota {
            max_24_hours: -1.0,
            max_per_second: 50.0,
            sent_24_hours: 1_000_000.0,
        };
        assert!(!unlimited.in_sandbox());
        assert!((unlimited.headroom() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_sandbox_is_read_from_the_quota() {
        let sandbox = Quota {
            max_24_hours: 200.0,
            max_per_second: 1.0,
            sent_24_hours: 150.0,
        };
        assert!(sandbox.in_sandbox());
        assert!((sandbox.headroom() - 0.25).abs() < 1e-9);
        let production = Quota {
            max_24_hours: 50_000.0,
            max_per_second: 14.0,
            sent_24_hours: 60_000.0,
        };
        assert!(!production.in_sandbox());
        assert!(production.headroom() == 0.0);
        assert_eq!(
            production.describe(),
            "50,000 emails in 24 hours, 14 a second; 60,000 sent in the last 24 hours"
        );
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(0.5), "0.5");
    }
}
