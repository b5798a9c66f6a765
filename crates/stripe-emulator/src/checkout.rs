//! `GET /checkout/{client_secret}`: a self-contained test payment page (no
//! external scripts or styles) standing in for Stripe.js. It shows the
//! amount, offers the test cards, and confirms the PaymentIntent with
//! `payment_method` and `client_secret`, as Stripe.js does, at a relative
//! URL so that it works wherever the emulator is mounted.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::secrets_match;
use crate::cards::DELAYED;
use crate::objects::IntentStatus;
use crate::{ids, money, Inner};

/// Escapes text for HTML element content and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The cards offered: label, number shown, PaymentMethod sent.
const CHOICES: &[(&str, &str, &str)] = &[
    ("成功 / Succeeds", "4242 4242 4242 4242", "pm_card_visa"),
    (
        "拒否 / Declined (generic_decline)",
        "4000 0000 0000 0002",
        "pm_card_visa_chargeDeclined",
    ),
    (
        "残高不足 / Insufficient funds",
        "4000 0000 0000 9995",
        "pm_card_visa_chargeDeclinedInsufficientFunds",
    ),
    (
        "遅延決済 / Delayed: processing, then succeeds",
        "(emulator)",
        DELAYED,
    ),
];

fn html_response(status: StatusCode, nonce: &str, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert("content-security-policy", value);
    }
    response
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Hiragino Sans','Noto Sans JP',sans-serif;background:#f6f8fa;color:#1a1f36;margin:0;padding:2rem 1rem}\
main{max-width:28rem;margin:0 auto;background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:1.5rem 1.75rem}\
h1{font-size:1.1rem;margin:0 0 .25rem}.note{color:#6b7280;font-size:.8rem;margin:0 0 1rem}\
.amount{font-size:2rem;font-weight:700;margin:.5rem 0}.muted{color:#6b7280;font-size:.85rem;word-break:break-all}\
fieldset{border:1px solid #e5e7eb;border-radius:8px;padding:.5rem .75rem;margin:1rem 0}\
label{display:block;padding:.4rem 0;cursor:pointer}code{font-size:.85rem;color:#374151}\
button{width:100%;padding:.75rem;border:0;border-radius:8px;background:#635bff;color:#fff;font-size:1rem;cursor:pointer}\
button:disabled{background:#a5a1ff;cursor:default}#result{margin-top:1rem;padding:.75rem;border-radius:8px;display:none}\
#result.ok{display:block;background:#ecfdf5;color:#065f46}#result.err{display:block;background:#fef2f2;color:#991b1b}\
#result.wait{display:block;background:#eff6ff;color:#1e40af}";

const SCRIPT: &str = r#"(function () {
  var form = document.getElementById('pay');
  var result = document.getElementById('result');
  var button = document.getElementById('submit');
  var intent = form.dataset.intent;
  var secret = form.dataset.secret;
  var base = new URL('../v1/payment_intents/' + encodeURIComponent(intent), window.location.href);
  function show(kind, text) { result.className = kind; result.textContent = text; }
  function outcome(pi) {
    if (pi.status === 'succeeded') { show('ok', 'お支払いが完了しました / Payment succeeded'); return true; }
    if (pi.status === 'requires_capture') { show('ok', 'オーソリが完了しました / Payment authorized'); return true; }
    if (pi.status === 'processing') { show('wait', '処理中です… / Processing…'); return false; }
    if (pi.status === 'canceled') { show('err', 'この支払いはキャンセルされました / This payment was canceled'); return true; }
    var error = pi.last_payment_error;
    show('err', (error && error.message ? error.message : 'お支払いできませんでした / The payment failed') + ' (' + pi.status + ')');
    button.disabled = false;
    return true;
  }
  function poll() {
    var url = new URL(base.href);
    url.searchParams.set('client_secret', secret);
    fetch(url.href, { headers: { 'Accept': 'application/json' } })
      .then(function (r) { return r.json(); })
      .then(function (pi) { if (!outcome(pi)) { setTimeout(poll, 1000); } })
      .catch(function () { setTimeout(poll, 2000); });
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var choice = form.querySelector('input[name=payment_method]:checked');
    if (!choice) { return; }
    button.disabled = true;
    show('wait', '送信中… / Confirming…');
    var body = new URLSearchParams();
    body.set('payment_method', choice.value);
    body.set('client_secret', secret);
    fetch(base.href + '/confirm', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: body.toString()
    }).then(function (r) {
      return r.json().then(function (json) { return { status: r.status, json: json }; });
    }).then(function (answer) {
      if (answer.json && answer.json.error) {
        var e = answer.json.error;
        var detail = e.decline_code || e.code || e.type;
        show('err', 'カードが拒否されました / ' + e.message + (detail ? ' (' + detail + ')' : ''));
        button.disabled = false;
        return;
      }
      if (!outcome(answer.json)) { setTimeout(poll, 1000); }
    }).catch(function () {
      show('err', '通信エラー / Network error; try again');
      button.disabled = false;
    });
  });
  if (form.dataset.status === 'processing') { poll(); }
})();"#;

fn not_found(nonce: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>Not found</title>\
<style nonce=\"{nonce}\">{STYLE}</style></head><body><main><h1>ページが見つかりません / Not found</h1>\
<p class=\"muted\">この支払いリンクは無効です。/ This payment link is not valid.</p></main></body></html>"
    );
    html_response(StatusCode::NOT_FOUND, nonce, body)
}

pub(crate) async fn page(State(inner): State<Arc<Inner>>, Path(secret): Path<String>) -> Response {
    let nonce = ids::random_alphanumeric(22);
    let Some(intent_id) = ids::intent_of_client_secret(&secret) else {
        return not_found(&nonce);
    };
    let intent = {
        let state = inner.lock();
        state
            .intents
            .get(intent_id)
            .filter(|i| secrets_match(&secret, &i.client_secret))
            .cloned()
    };
    let Some(intent) = intent else {
        return not_found(&nonce);
    };
    let amount = money::format_amount(intent.amount, &intent.currency);
    let currency = intent.currency.to_ascii_uppercase();
    let open = intent.status.is_open();
    let status_note = match intent.status {
        IntentStatus::Succeeded => Some("お支払い済みです / Already paid"),
        IntentStatus::Processing => Some("処理中です / Processing"),
        IntentStatus::Canceled => Some("キャンセルされました / Canceled"),
        IntentStatus::RequiresCapture => Some("オーソリ済みです / Authorized"),
        _ => None,
    };
    let description = intent
        .description
        .as_deref()
        .map(|d| format!("<p class=\"muted\">{}</p>", escape(d)))
        .unwrap_or_default();
    let mut choices = String::new();
    for (i, (label, number, method)) in CHOICES.iter().enumerate() {
        choices.push_str(&format!(
            "<label><input type=\"radio\" name=\"payment_method\" value=\"{}\"{}> {} <code>{}</code></label>",
            escape(method),
            if i == 0 { " checked" } else { "" },
            escape(label),
            escape(number)
        ));
    }
    let result = match status_note {
        Some(note) if !open => format!("<div id=\"result\" class=\"wait\">{}</div>", escape(note)),
        _ => "<div id=\"result\"></div>".to_string(),
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>お支払い / Payment {amount}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
<body><main><h1>お支払い / Payment</h1>\
<p class=\"note\">Stripe エミュレーター — テスト用カードのみ / Stripe emulator, test cards only</p>\
<div class=\"amount\" id=\"amount\">{amount} <span class=\"muted\">{currency}</span></div>{description}\
<p class=\"muted\">{intent_id_text}</p>\
<form id=\"pay\" data-intent=\"{intent_attr}\" data-secret=\"{secret_attr}\" data-status=\"{status}\">\
<fieldset><legend>テストカード / Test card</legend>{choices}</fieldset>\
<button id=\"submit\" type=\"submit\"{disabled}>{amount} を支払う / Pay</button></form>{result}</main>\
<script nonce=\"{nonce}\">{SCRIPT}</script></body></html>",
        amount = escape(&amount),
        currency = escape(&currency),
        intent_id_text = escape(&intent.id),
        intent_attr = escape(&intent.id),
        secret_attr = escape(&intent.client_secret),
        status = escape(intent.status.as_str()),
        disabled = if open { "" } else { " disabled" },
    );
    html_response(StatusCode::OK, &nonce, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
