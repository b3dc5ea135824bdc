//! A minimal Lambda Runtime API (the documented `/2018-06-01/runtime/...` endpoints) for
//! one function process: it hands out queued events on `invocation/next` and records when
//! the process first asked for work (end of init) and when each response arrived.
//! Sockets use TCP_NODELAY, as the real Runtime API does not add Nagle delays either.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the runtime saw, in order.
#[derive(Debug)]
pub enum Seen {
    /// The process asked for its first invocation: init is over.
    FirstNext(Instant),
    /// An invocation was handed out (at) and answered (done) with this body.
    Answered {
        handed_out: Instant,
        done: Instant,
        body: String,
    },
    /// The function reported an error (init or invocation).
    Failed(String),
}

struct State {
    queued: Mutex<Receiver<String>>,
    report: Mutex<Sender<Seen>>,
    first_next: Mutex<bool>,
    handed_out: Mutex<Instant>,
    counter: Mutex<u64>,
}

pub struct RuntimeApi {
    pub address: String,
    events: Sender<String>,
    seen: Receiver<Seen>,
}

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the runtime API");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("an address").to_string();
        let (events, queued) = channel::<String>();
        let (report, seen) = channel::<Seen>();
        let state = Arc::new(State {
            queued: Mutex::new(queued),
            report: Mutex::new(report),
            first_next: Mutex::new(true),
            handed_out: Mutex::new(Instant::now()),
            counter: Mutex::new(0),
        });
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(Arc::clone(&state), request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RuntimeApi {
            address,
            events,
            seen,
        }
    }

    /// Queues one API Gateway event for the function.
    pub fn invoke(&self, event: String) {
        self.events.send(event).expect("runtime API alive");
    }

    pub fn next_seen(&self, timeout: Duration) -> Seen {
        self.seen.recv_timeout(timeout).unwrap_or_else(|_| {
            Seen::Failed(format!("nothing from the function within {timeout:?}"))
        })
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && path.ends_with("/runtime/invocation/next") {
        {
            let mut first = state.first_next.lock().unwrap();
            if *first {
                *first = false;
                let _ = state
                    .report
                    .lock()
                    .unwrap()
                    .send(Seen::FirstNext(Instant::now()));
            }
        }
        let waiting = Arc::clone(&state);
        let event = tokio::task::spawn_blocking(move || waiting.queued.lock().unwrap().recv().ok())
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let id = {
            let mut counter = state.counter.lock().unwrap();
            *counter += 1;
            *counter
        };
        *state.handed_out.lock().unwrap() = Instant::now();
        let deadline = (time::OffsetDateTime::now_utc().unix_timestamp() + 30) * 1000;
        let response = Response::builder()
            .header("Lambda-Runtime-Aws-Request-Id", format!("bench-{id}"))
            .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
            .header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            .header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(event)))
            .expect("a response");
        return Ok(response);
    }
    let body = request.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    let seen = if path.ends_with("/response") {
        Seen::Answered {
            handed_out: *state.handed_out.lock().unwrap(),
            done: Instant::now(),
            body,
        }
    } else {
        Seen::Failed(format!("{path}: {body}"))
    };
    let _ = state.report.lock().unwrap().send(seen);
    Ok(Response::builder()
        .status(202)
        .body(Full::new(Bytes::new()))
        .expect("a response"))
}
