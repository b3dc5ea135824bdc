//! The change feed's stream consumer (not an HTTP endpoint): see `shared::changes`.
fn main() -> Result<(), lambda_runtime::Error> {
    shared::http::run_changes_consumer()
}
