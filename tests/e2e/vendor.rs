//! A stand-in for the outside systems runs call: a verification vendor that calls the
//! run back, and a payment API that fails a set number of times. It runs in the test
//! process, on a free loopback port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

/// How the stand-in answers.
#[derive(Clone)]
pub enum Behaviour {
    /// Accepts the submission, then POSTs `body` to its `callback_url` after `delay_ms`.
    CallBack { delay_ms: u64, body: Value },
    /// Accepts the submission and never calls back.
    Silent,
    /// Answers 503 this many times, then 200 with a receipt.
    FailTimes(usize),
    /// Always answers with this status.
    Status(u16),
    /// Answers `307 Temporary Redirect` to this URL.
    Redirect(String),
    /// Takes the submission and never answers.
    Hang,
    /// Answers 200 with a body of this many bytes.
    Large(usize),
}

struct Shared {
    behaviour: Behaviour,
    received: Mutex<Vec<Value>>,
    calls: AtomicUsize,
}

pub struct Vendor {
    pub url: String,
    shared: Arc<Shared>,
}

impl Vendor {
    pub async fn start(behaviour: Behaviour) -> Vendor {
        let shared = Arc::new(Shared { behaviour, received: Mutex::default(), calls: AtomicUsize::new(0) });
        let app = axum::Router::new().route("/api", post(handle)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("vendor binds");
        let url = format!("http://{}/api", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Vendor { url, shared }
    }

    /// The bodies received so far.
    pub fn received(&self) -> Vec<Value> {
        self.shared.received.lock().expect("lock").clone()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &shared.behaviour {
        Behaviour::Redirect(target) => {
            shared.received.lock().expect("lock").push(body);
            (StatusCode::TEMPORARY_REDIRECT, [("location", target.clone())]).into_response()
        }
        Behaviour::Hang => {
            shared.received.lock().expect("lock").push(body);
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
        Behaviour::Large(bytes) => {
            shared.received.lock().expect("lock").push(body);
            (StatusCode::OK, "x".repeat(*bytes)).into_response()
        }
        _ => answer(&shared, body).into_response(),
    }
}

fn answer(shared: &Shared, body: Value) -> (StatusCode, Json<Value>) {
    let call = shared.calls.fetch_add(1, Ordering::SeqCst) + 1;
    shared.received.lock().expect("lock").push(body.clone());
    match &shared.behaviour {
        Behaviour::CallBack { delay_ms, body: answer } => {
            let (delay, answer) = (Duration::from_millis(*delay_ms), answer.clone());
            let callback = body["callback_url"].as_str().unwrap_or_default().to_string();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = latch_testkit::http_client().post(callback).json(&answer).send().await;
            });
            (StatusCode::ACCEPTED, Json(json!({ "queued": true })))
        }
        Behaviour::Silent => (StatusCode::ACCEPTED, Json(json!({ "queued": true }))),
        Behaviour::FailTimes(failures) if call <= *failures => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "try later" })))
        }
        Behaviour::FailTimes(_) => (StatusCode::OK, Json(json!({ "receipt": format!("r-{call}") }))),
        Behaviour::Status(status) => {
            (StatusCode::from_u16(*status).unwrap_or(StatusCode::IM_A_TEAPOT), Json(json!({ "status": status })))
        }
        Behaviour::Redirect(_) | Behaviour::Hang | Behaviour::Large(_) => unreachable!("answered by `handle`"),
    }
}
