//! The portal's pages and its sign-in email, from maud templates (every value escaped by default). Pages work
//! without JavaScript; their one stylesheet is inline and allowed by its hash in the Content-Security-Policy.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{LicenseView, SIGNIN_LINK_LIFETIME};
use crate::domain::{Email, LicenseStatus, TenantId};
use crate::mail::KeyEmail;

/// A page and its status; the HTTP adapter adds the headers.
pub struct Page {
    pub status: u16,
    pub html: String,
}

/// What the buyer's last action did, shown once above their licenses (`?done=<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    KeySent,
    SeatFreed,
    SeatAlreadyFree,
    KeyReplaced,
    KeyReplacedNotSent,
    NotSent,
    Refused,
}

impl Notice {
    pub fn code(self) -> &'static str {
        match self {
            Self::KeySent => "key-sent",
            Self::SeatFreed => "seat-freed",
            Self::SeatAlreadyFree => "seat-already-free",
            Self::KeyReplaced => "key-replaced",
            Self::KeyReplacedNotSent => "key-replaced-not-sent",
            Self::NotSent => "not-sent",
            Self::Refused => "refused",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::KeySent,
            Self::SeatFreed,
            Self::SeatAlreadyFree,
            Self::KeyReplaced,
            Self::KeyReplacedNotSent,
            Self::NotSent,
            Self::Refused,
        ]
        .into_iter()
        .find(|n| n.code() == code)
    }

    fn text(self) -> &'static str {
        match self {
            Self::KeySent => "We emailed you the key.",
            Self::SeatFreed => "The seat is free: activate the key on another machine.",
            Self::SeatAlreadyFree => "That machine no longer held a seat.",
            Self::KeyReplaced => {
                "Your key was replaced and the new one emailed to you. The old key no longer works."
            }
            Self::KeyReplacedNotSent => {
                "Your key was replaced; the old key no longer works. We could not email the new one: it is shown below."
            }
            Self::NotSent => "We could not send the email. Please try again in a minute.",
            Self::Refused => "That is not possible for this license.",
        }
    }

    fn is_problem(self) -> bool {
        matches!(self, Self::NotSent | Self::Refused)
    }
}

/// The stylesheet: high contrast, large targets, one column on a phone.
pub const STYLE: &str = "\
body{font:17px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1b1b1b;background:#f6f7f9;margin:0}\
main{max-width:44rem;margin:0 auto;padding:1.5rem 1rem 3rem}\
h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.25rem;margin:0 0 .5rem}\
.card{background:#fff;border:1px solid #c9ced6;border-radius:10px;padding:1.1rem 1.2rem;margin:1rem 0}\
label{display:block;font-weight:600;margin:.5rem 0 .3rem}\
input[type=email]{font:inherit;width:100%;box-sizing:border-box;padding:.65rem .7rem;border:2px solid #5b6472;border-radius:8px}\
input:focus,button:focus,a:focus,summary:focus{outline:3px solid #f0b400;outline-offset:2px}\
button{font:inherit;font-weight:600;padding:.6rem 1rem;border-radius:8px;border:2px solid #0b4fbf;background:#0b4fbf;color:#fff;cursor:pointer;min-height:44px}\
button.secondary{background:#fff;color:#0b4fbf}button.danger{background:#fff;color:#a3161a;border-color:#a3161a}\
a{color:#0b4fbf}code,.key{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}\
.key{font-size:1.05rem;background:#eef1f5;padding:.5rem .6rem;border-radius:6px;display:inline-block;margin:.4rem 0}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}dt{color:#4a5260}dd{margin:0}\
.status{display:inline-block;padding:.1rem .55rem;border-radius:999px;font-size:.9rem;font-weight:700}\
.active{background:#d9f2e1;color:#0c5a26}.inactive{background:#fde2e1;color:#8a1116}\
.notice{border-left:6px solid #1d7a3b;background:#e8f6ec;padding:.7rem 1rem;border-radius:6px}\
.notice.problem{border-color:#a3161a;background:#fdecec}\
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{text-align:left;padding:.45rem .3rem;border-bottom:1px solid #dde1e7;vertical-align:middle}\
.actions{display:flex;flex-wrap:wrap;gap:.6rem;align-items:center;margin-top:.8rem}form{margin:0}\
.muted{color:#4a5260;font-size:.95rem}.notes{white-space:pre-line}.check{display:flex;gap:.5rem;align-items:flex-start;font-weight:400}\
.top{display:flex;justify-content:space-between;align-items:center;gap:1rem;flex-wrap:wrap}\
caption{text-align:left}@media (max-width:520px){th.hide,td.hide{display:none}}";

fn layout(title: &str, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { main { (content) } }
        }
    }
    .into_string()
}

fn page(status: u16, title: &str, content: Markup) -> Page {
    Page {
        status,
        html: layout(title, content),
    }
}

fn request_form(tenant: &TenantId, problem: Option<&str>) -> Markup {
    html! {
        form method="post" action={ "/portal/" (tenant) "/link" } {
            label for="email" { "Email address you bought with" }
            @if let Some(problem) = problem {
                p id="email-problem" class="notice problem" { (problem) }
            }
            input id="email" name="email" type="email" required autocomplete="email" inputmode="email"
                aria-describedby=[problem.map(|_| "email-problem")];
            div class="actions" { button type="submit" { "Email me a sign-in link" } }
        }
    }
}

/// `GET /portal/{tenant}`: the email form.
pub fn signin(tenant: &TenantId, problem: Option<&str>) -> Page {
    page(
        if problem.is_some() { 400 } else { 200 },
        "Your licenses",
        html! {
            h1 { "Your licenses" }
            div class="card" {
                p { "Enter the email address you used at checkout. We will send you a link that signs you in." }
                (request_form(tenant, problem))
            }
        },
    )
}

/// The answer to every sign-in request, whether or not a mail went out.
pub fn link_sent(tenant: &TenantId) -> Page {
    page(
        200,
        "Check your email",
        html! {
            h1 { "Check your email" }
            div class="card" role="status" {
                p { "If that address bought something here, a sign-in link is on its way." }
                p class="muted" { "The link works once, for " (SIGNIN_LINK_LIFETIME / 60) " minutes. Nothing arrived? Check your spam folder, or ask again in a few minutes." }
                p { a href={ "/portal/" (tenant) } { "Back" } }
            }
        },
    )
}

/// `GET /portal/{tenant}/signin?token=…`: one press signs in (mail scanners that follow links sign in no one).
pub fn confirm_signin(tenant: &TenantId, token: &str) -> Page {
    page(
        200,
        "Sign in",
        html! {
            h1 { "Sign in" }
            div class="card" {
                p { "Press the button to see your licenses." }
                form method="post" action={ "/portal/" (tenant) "/signin" } {
                    input type="hidden" name="token" value=(token);
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub fn link_invalid(tenant: &TenantId) -> Page {
    page(
        400,
        "Link expired",
        html! {
            h1 { "This link has expired" }
            div class="card" {
                p { "Sign-in links work once, for " (SIGNIN_LINK_LIFETIME / 60) " minutes. Ask for a new one:" }
                (request_form(tenant, None))
            }
        },
    )
}

fn status_label(status: LicenseStatus) -> (&'static str, &'static str) {
    match status {
        LicenseStatus::Active => ("Active", "active"),
        LicenseStatus::Suspended => ("Suspended", "inactive"),
        LicenseStatus::Revoked => ("Revoked", "inactive"),
        LicenseStatus::Expired => ("Expired", "inactive"),
    }
}

fn action(tenant: &TenantId, license_id: &str, what: &str) -> String {
    format!("/portal/{tenant}/licenses/{license_id}/{what}")
}

fn day(at: &str) -> String {
    at.chars().take(10).collect()
}

fn when(at: &str) -> String {
    at.chars().take(16).collect::<String>().replace('T', " ") + " UTC"
}

/// `GET /portal/{tenant}/licenses`: the signed-in buyer's licenses.
pub fn licenses(
    tenant: &TenantId,
    email: &Email,
    views: &[LicenseView],
    csrf: &str,
    notice: Option<Notice>,
) -> Page {
    page(
        200,
        "Your licenses",
        html! {
            div class="top" {
                h1 { "Your licenses" }
                form method="post" action={ "/portal/" (tenant) "/signout" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" class="secondary" { "Sign out" }
                }
            }
            p class="muted" { "Signed in as " strong { (email) } "." }
            @if let Some(notice) = notice {
                p class={ "notice" @if notice.is_problem() { " problem" } } role="status" { (notice.text()) }
            }
            @if views.is_empty() {
                div class="card" { p { "No licenses are registered to this address." } }
            }
            @for view in views {
                @let license = &view.license;
                @let (label, class) = status_label(view.status);
                section class="card" aria-labelledby={ "l-" (license.license_id) } {
                    h2 id={ "l-" (license.license_id) } { (license.product_name) }
                    dl {
                        dt { "Status" } dd { span class={ "status " (class) } { (label) } }
                        dt { "Expires" } dd { (license.expires_at.as_deref().map_or_else(|| "Never".to_owned(), day)) }
                        dt { "Machines" } dd { (license.activations) " of " (license.activation_limit) " in use" }
                        dt { "Bought" } dd { (day(&license.created_at)) }
                    }
                    details {
                        summary { "Show license key" }
                        span class="key" { (license.key.expose()) }
                    }
                    @if let Some(download) = &view.download {
                        p {
                            a href=(download.url) { "Download " (download.name) } " (" (download.size) ")"
                            br;
                            span class="muted" { "SHA-256: " code { (download.sha256) } }
                        }
                    }
                    @if !view.releases.is_empty() {
                        details open[view.download.is_none()] {
                            summary { "Versions you can download" }
                            @for release in &view.releases {
                                div class="release" {
                                    p {
                                        strong { (release.version) } " "
                                        span class="muted" { (release.target) " · " (day(&release.released_at)) }
                                    }
                                    @if let Some(notes) = &release.notes {
                                        p class="notes" { (notes) }
                                    }
                                    @for file in &release.files {
                                        p {
                                            a href=(file.url) { "Download " (file.name) } " (" (file.size) ")"
                                            br;
                                            span class="muted" { "SHA-256: " code { (file.sha256) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if !view.machines.is_empty() {
                        table {
                            caption class="muted" { "Activated machines" }
                            thead { tr { th scope="col" { "Machine" } th scope="col" class="hide" { "Last seen" } th scope="col" { span class="muted" { "Seat" } } } }
                            tbody {
                                @for machine in &view.machines {
                                    @let name = machine.label.clone().unwrap_or_else(|| machine.machine_id.clone());
                                    tr {
                                        td { (name) br; span class="muted" { code { (machine.machine_id) } } }
                                        td class="hide" { (when(machine.last_seen.as_deref().unwrap_or(&machine.activated_at))) }
                                        td {
                                            form method="post" action=(action(tenant, license.license_id.as_str(), "deactivate")) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                input type="hidden" name="machine_id" value=(machine.machine_id);
                                                button type="submit" class="secondary" aria-label={ "Free the seat of " (name) } { "Free this seat" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div class="actions" {
                        @if view.status != LicenseStatus::Revoked {
                            form method="post" action=(action(tenant, license.license_id.as_str(), "send-key")) {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" class="secondary" aria-label={ "Email me the key for " (license.product_name) } { "Email me this key" }
                            }
                        }
                    }
                    @if view.status == LicenseStatus::Revoked {
                        p class="muted" { "This license was revoked (for example after a refund): it cannot be used or replaced." }
                    } @else {
                        form method="post" action=(action(tenant, license.license_id.as_str(), "replace")) {
                            input type="hidden" name="csrf" value=(csrf);
                            label class="check" {
                                input type="checkbox" name="confirm" value="yes" required;
                                span { "I understand that my current key stops working at once and every machine must activate again with the new key." }
                            }
                            div class="actions" {
                                button type="submit" class="danger" aria-label={ "Replace my key for " (license.product_name) } { "Replace my key" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Why a download was refused (403), or that there is nothing to download (404).
pub fn download_refused(tenant: &TenantId, status: u16, reason: &str) -> Page {
    page(
        status,
        "Download unavailable",
        html! {
            h1 { "Download unavailable" }
            div class="card" role="alert" {
                p { (reason) }
                p { a href={ "/portal/" (tenant) } { "Sign in to your licenses" } }
            }
        },
    )
}

pub fn problem(status: u16, title: &str, text: &str) -> Page {
    page(
        status,
        title,
        html! {
            h1 { (title) }
            div class="card" { p { (text) } }
        },
    )
}

/// The sign-in email.
pub fn signin_email(from: &Email, to: &Email, tenant: &TenantId, link: &str) -> KeyEmail {
    let minutes = SIGNIN_LINK_LIFETIME / 60;
    let text = format!(
        "Hi,\n\nUse this link to see your licenses from {tenant}:\n\n    {link}\n\n\
         It works once, for {minutes} minutes. If you did not ask for it, ignore this email.\n"
    );
    let html = html! {
        (DOCTYPE)
        html {
            body style="font-family:sans-serif" {
                p { "Hi," }
                p { "Use this link to see your licenses from " (tenant) ":" }
                p { a href=(link) { "Sign in to your licenses" } }
                p { "It works once, for " (minutes) " minutes. If you did not ask for it, ignore this email." }
            }
        }
    }
    .into_string();
    KeyEmail {
        from: from.clone(),
        to: to.clone(),
        subject: "Your sign-in link".to_owned(),
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_by_code() {
        for notice in [Notice::KeySent, Notice::SeatFreed, Notice::Refused] {
            assert_eq!(Notice::parse(notice.code()), Some(notice));
        }
        assert_eq!(Notice::parse("<script>"), None);
    }

    #[test]
    fn pages_escape_what_they_show() {
        let tenant = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let page = confirm_signin(&tenant, "\"><script>alert(1)</script>");
        assert!(!page.html.contains("<script>alert"));
        assert!(page.html.contains("&quot;&gt;&lt;script&gt;"));
    }
}
