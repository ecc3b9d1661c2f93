//! oauth2's HTTP requests sent with ureq.
//!
//! Not the `ureq` feature of oauth2: it hands ureq's error for a 4xx
//! answer back as a failed request, so the provider's `invalid_grant` (a
//! credential to replace) would look like a network failure (retry
//! later). Here every answer with a status is an answer.

use std::io::Read;
use std::time::Duration;

use oauth2::http::{header::CONTENT_TYPE, Method, Response, StatusCode};
use oauth2::{HttpRequest, HttpResponse};

/// A token answer is a few KB; this bounds a hostile one.
const MAX_BODY: u64 = 1 << 20;

/// A request that got no answer (or an unreadable one).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CallError(String);

pub fn agent(timeout: Duration) -> ureq::Agent {
    // No redirects: a token endpoint that redirects is misconfigured, and
    // following one would send the client secret elsewhere.
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(timeout)
        .build()
}

pub fn call(agent: &ureq::Agent, request: HttpRequest) -> Result<HttpResponse, CallError> {
    let uri = request.uri().to_string();
    let mut req = if request.method() == Method::POST {
        agent.post(&uri)
    } else {
        agent.get(&uri)
    };
    for (name, value) in request.headers() {
        let value = value
            .to_str()
            .map_err(|_| CallError(format!("header {name} is not text")))?;
        req = req.set(name.as_str(), value);
    }
    let sent = if request.method() == Method::POST {
        req.send_bytes(request.body())
    } else {
        req.call()
    };
    let answer = match sent {
        Ok(a) => a,
        Err(ureq::Error::Status(_, a)) => a,
        Err(ureq::Error::Transport(t)) => return Err(CallError(transport(&t))),
    };
    let status = StatusCode::from_u16(answer.status())
        .map_err(|_| CallError(format!("HTTP status {} is not valid", answer.status())))?;
    let mut response = Response::builder().status(status);
    if let Some(ct) = answer.header(CONTENT_TYPE.as_str()) {
        response = response.header(CONTENT_TYPE, ct);
    }
    let mut body = Vec::new();
    answer
        .into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| CallError(format!("reading the answer: {e}")))?;
    response
        .body(body)
        .map_err(|e| CallError(format!("the answer: {e}")))
}

/// ureq's transport error in one line, without the URL it repeats.
fn transport(t: &ureq::Transport) -> String {
    let kind = t.kind().to_string();
    match t.message() {
        Some(m) => format!("{kind}: {m}"),
        None => match std::error::Error::source(t) {
            Some(s) => format!("{kind}: {s}"),
            None => kind,
        },
    }
}
