use lambda_http::{service_fn, Body, Error, Request, Response};

// The same single-threaded runtime as the functions (shared::http::run).
fn main() -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(lambda_http::run(service_fn(|_: Request| async {
            Ok::<_, Error>(Response::new(Body::Text("hello".into())))
        })))
}
